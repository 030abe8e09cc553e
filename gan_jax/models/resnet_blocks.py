"""The residual blocks of the ResNet GANs (SNGAN, cGAN-PD, WGAN-GP, BigGAN), NHWC.

After the SNGAN authors' Chainer code (pfnet-research/sngan_projection, as mimicry ports it:
torch_mimicry/modules/resblocks.py) and BigGAN-PyTorch (layers.py: GBlock, DBlock, Attention):

- `GBlock`: norm-ReLU-(2x nearest upsampling)-conv3x3-norm-ReLU-conv3x3, plus a shortcut that is
  the identity, or a 1x1 convolution of the (upsampled) input where the shape changes.
- `DBlock`: (ReLU)-conv3x3-ReLU-conv3x3-(2x2 average pooling), plus a shortcut: identity, or a 1x1
  convolution and the pooling. `preactivation=False` is the first ("optimized") block of D, which
  starts with the convolution and pools its input before the shortcut's convolution.
- `SelfAttention`: SAGAN's non-local block as BigGAN has it, gated by a scalar that starts at 0.

A block's normalization is a module factory `norm` whose instances are called as
`norm()(x, cond, train=train)`: `PlainBatchNorm` (its own gain and bias; `cond` unused),
conditioning.ClassBatchNorm (cond: labels) or conditioning.ConditionedBatchNorm (cond: a vector), so
one block serves unconditional and conditional generators alike.

The papers upsample by nearest neighbour (Chainer's unpooling, BigGAN's F.interpolate default);
mimicry's GBlock interpolates bilinearly instead. Neither changes a parameter count."""

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from flax.typing import Initializer

from gan_jax.models.layers import Conv


def xavier_uniform(gain: float = 1.0) -> Initializer:
    """torch.nn.init.xavier_uniform_(w, gain): U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))."""
    return nn.initializers.variance_scaling(gain * gain, "fan_avg", "uniform")


def upsample_nearest(x: jnp.ndarray) -> jnp.ndarray:
    """(N, H, W, C) -> (N, 2H, 2W, C), every pixel repeated 2x2."""
    n, h, w, c = x.shape
    return jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, 2, w, 2, c)).reshape(n, 2 * h, 2 * w, c)


def avg_pool_2x2(x: jnp.ndarray) -> jnp.ndarray:
    """(N, H, W, C) -> (N, H/2, W/2, C): the mean of each 2x2 window (H and W even)."""
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def max_pool_2x2(x: jnp.ndarray) -> jnp.ndarray:
    """(N, H, W, C) -> (N, H/2, W/2, C): the max of each 2x2 window (H and W even)."""
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class PlainBatchNorm(nn.Module):
    """BatchNorm with its own gain and bias, called as the conditional norms are: x (N, ..., F),
    cond ignored -> (N, ..., F)."""

    momentum: float = 0.9
    epsilon: float = 1e-5
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jnp.ndarray, cond: Any = None, train: bool = True) -> jnp.ndarray:
        return nn.BatchNorm(use_running_average=not train, momentum=self.momentum, epsilon=self.epsilon,
                            axis_name=self.axis_name)(x)


class GBlock(nn.Module):
    """x (N, H, W, C_in) -> (N, 2H, 2W, features) with `upsample`, else (N, H, W, features)."""

    features: int
    upsample: bool = True
    norm: Callable[[], nn.Module] = PlainBatchNorm
    conv_impl: str = "auto"
    kernel_init: Initializer = xavier_uniform(math.sqrt(2))  # the 3x3 convolutions (SNGAN's code)
    shortcut_init: Initializer = xavier_uniform()

    @nn.compact
    def __call__(self, x: jnp.ndarray, cond: Any = None, train: bool = True) -> jnp.ndarray:
        conv = lambda k, init, name: Conv(self.features, (k, k), padding="SAME", kernel_init=init,
                                          impl=self.conv_impl, name=name)
        h = nn.relu(self.norm()(x, cond, train=train))
        h = upsample_nearest(h) if self.upsample else h
        h = conv(3, self.kernel_init, "conv1")(h)
        h = nn.relu(self.norm()(h, cond, train=train))
        h = conv(3, self.kernel_init, "conv2")(h)
        if self.upsample or x.shape[-1] != self.features:
            # a 1x1 convolution commutes with nearest upsampling: convolve the smaller map
            x = conv(1, self.shortcut_init, "shortcut")(x)
            x = upsample_nearest(x) if self.upsample else x
        return h + x


class DBlock(nn.Module):
    """x (N, H, W, C_in) -> (N, H/2, W/2, features) with `downsample`, else (N, H, W, features).
    hidden: the channels between the two 3x3 convolutions; None: C_in in the blocks after the first
    (SNGAN's), `features` in the first; BigGAN's "wide" D passes `features`."""

    features: int
    downsample: bool = True
    preactivation: bool = True  # False: D's first block (no ReLU on the image; pool before the shortcut conv)
    hidden: int | None = None
    conv_impl: str = "auto"
    kernel_init: Initializer = xavier_uniform(math.sqrt(2))
    shortcut_init: Initializer = xavier_uniform()

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        hidden = self.hidden or (x.shape[-1] if self.preactivation else self.features)
        conv = lambda f, k, init, name: Conv(f, (k, k), padding="SAME", kernel_init=init, impl=self.conv_impl,
                                             name=name)
        h = nn.relu(x) if self.preactivation else x
        h = conv(hidden, 3, self.kernel_init, "conv1")(h)
        h = conv(self.features, 3, self.kernel_init, "conv2")(nn.relu(h))
        h = avg_pool_2x2(h) if self.downsample else h
        if not self.preactivation:
            x = avg_pool_2x2(x) if self.downsample else x
            x = conv(self.features, 1, self.shortcut_init, "shortcut")(x)
        elif self.downsample or x.shape[-1] != self.features:
            x = conv(self.features, 1, self.shortcut_init, "shortcut")(x)
            x = avg_pool_2x2(x) if self.downsample else x
        return h + x


class SelfAttention(nn.Module):
    """x (N, H, W, C) -> x + gamma * o(attention) (N, H, W, C), H and W even, C divisible by 8:
    queries theta (C/8) at every pixel, keys phi (C/8) and values g (C/2) max-pooled 2x2, softmax
    over the keys, a 1x1 convolution o back to C channels; gamma is a scalar that starts at 0
    (BigGAN-PyTorch layers.Attention; its convolutions have no bias)."""

    conv_impl: str = "auto"
    kernel_init: Initializer = nn.initializers.orthogonal()

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        n, h, w, c = x.shape
        conv = lambda f, name: Conv(f, (1, 1), use_bias=False, kernel_init=self.kernel_init, impl=self.conv_impl,
                                    name=name)
        theta = conv(c // 8, "theta")(x).reshape(n, h * w, c // 8)
        phi = max_pool_2x2(conv(c // 8, "phi")(x)).reshape(n, h * w // 4, c // 8)
        g = max_pool_2x2(conv(c // 2, "g")(x)).reshape(n, h * w // 4, c // 2)
        beta = nn.softmax(jnp.einsum("nqc,nkc->nqk", theta, phi), axis=-1)
        o = conv(c, "o")(jnp.einsum("nqk,nkc->nqc", beta, g).reshape(n, h, w, c // 2))
        gamma = self.param("gamma", nn.initializers.zeros, ())
        return x + gamma * o
