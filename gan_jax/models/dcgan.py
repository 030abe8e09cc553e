"""DCGANs: the reference model of the TensorFlow DCGAN tutorial (MNIST 28x28) and the DCGAN of
Radford et al. (2015) for 32x32 and 64x64 RGB images. With model.num_classes > 0 they are
class-conditional (gan_jax/models/conditioning.py): the tutorial's G reads the one-hot label appended
to z (Mirza & Osindero 2014), Radford's G class-conditional BatchNorm; either D reads it as
model.discriminator_conditioning says."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from gan_jax.errors import ConfigError
from gan_jax.models import FRACTION, POSITIVE, Field, register, settings
from gan_jax.models.conditioning import (
    DISCRIMINATOR_CONDITIONING_FIELD,
    ClassBatchNorm,
    concat_labels,
    discriminator_conditioning,
)
from gan_jax.models.layers import Conv, ConvTranspose
from gan_jax.ops import random


class ExampleDropout(nn.Module):
    """Dropout whose mask is keyed per example (fold_in(rng, global example index)), so that the
    masks of a global batch are the same however the batch is split over devices or under pmap."""

    rate: float
    axis_name: str | None = None  # pmap axis: examples on device i start at i * local_batch

    @nn.compact
    def __call__(self, x: jnp.ndarray, deterministic: bool) -> jnp.ndarray:
        if deterministic or self.rate == 0.0:
            return x
        rng = self.make_rng("dropout")
        ids = jnp.arange(x.shape[0])
        if self.axis_name is not None:
            ids = ids + jax.lax.axis_index(self.axis_name) * x.shape[0]
        keep = 1.0 - self.rate
        mask = jax.vmap(lambda i: random.bernoulli(jax.random.fold_in(rng, i), keep, x.shape[1:]))(ids)
        return jnp.where(mask, x / keep, 0.0)


class TutorialGenerator(nn.Module):
    """The TF tutorial's generator: z (N, 100) -> images (N, 28, 28, channels) in [-1, 1]."""

    channels: int = 1
    conv_impl: str = "auto"
    bn_axis_name: str | None = None
    width: int = 64  # the tutorial's; hidden channels are 4w, 2w, w
    num_classes: int = 0  # > 0: the one-hot label (N,) appended to z

    @nn.compact
    def __call__(self, z: jnp.ndarray, labels: jnp.ndarray | None = None, train: bool = True) -> jnp.ndarray:
        w = self.width
        if self.num_classes:
            z = concat_labels(z, labels, self.num_classes)

        def bn_act(h):
            h = nn.BatchNorm(use_running_average=not train, momentum=0.9, axis_name=self.bn_axis_name)(h)
            return nn.leaky_relu(h, 0.3)  # Keras' LeakyReLU default slope

        h = bn_act(nn.Dense(7 * 7 * 4 * w, use_bias=False)(z)).reshape(-1, 7, 7, 4 * w)
        h = bn_act(ConvTranspose(2 * w, (5, 5), (1, 1), "SAME", use_bias=False, impl=self.conv_impl)(h))
        h = bn_act(ConvTranspose(w, (5, 5), (2, 2), "SAME", use_bias=False, impl=self.conv_impl)(h))
        return jnp.tanh(ConvTranspose(self.channels, (5, 5), (2, 2), "SAME", use_bias=False,
                                      impl=self.conv_impl)(h))


FEATURES = "features"  # the 'intermediates' entry a discriminator sows: its last hidden layer (N, ...)


class TutorialDiscriminator(nn.Module):
    """The TF tutorial's discriminator: images (N, 28, 28, C) (and labels (N,)) -> logits (N,)."""

    dropout_rate: float = 0.3
    conv_impl: str = "auto"
    dropout_axis_name: str | None = None
    width: int = 64  # the tutorial's; channels are w, 2w
    num_classes: int = 0
    conditioning: str = "concat"  # with num_classes > 0: conditioning.DISCRIMINATOR_CONDITIONINGS

    @nn.compact
    def __call__(self, x: jnp.ndarray, labels: jnp.ndarray | None = None, train: bool = True) -> jnp.ndarray:
        conditioning = discriminator_conditioning(self.conditioning, self.num_classes)
        h = conditioning.inputs(x, labels, self.num_classes)
        for features in (self.width, 2 * self.width):
            h = nn.leaky_relu(Conv(features, (5, 5), (2, 2), "SAME", impl=self.conv_impl)(h), 0.3)
            if features == 2 * self.width:
                self.sow("intermediates", FEATURES, h)  # VAE-GAN's reconstruction layer (before dropout)
            h = ExampleDropout(self.dropout_rate, self.dropout_axis_name)(h, deterministic=not train)
        return conditioning.head(h.reshape(h.shape[0], -1), labels, self.num_classes)


_init = nn.initializers.normal(0.02)  # Radford et al.: all weights from N(0, 0.02)


def _bn(train: bool, axis_name: str | None) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, axis_name=axis_name,
                        scale_init=lambda k, s, d: 1.0 + 0.02 * jax.random.normal(k, s, d))


class RadfordGenerator(nn.Module):
    """z (N, latent_dim) -> images (N, S, S, channels) in [-1, 1], S = 4 * 2^k: a projection to
    4x4, then 4x4 stride-2 transposed convolutions doubling the resolution, BN+ReLU, tanh output.
    With num_classes > 0 every BatchNorm is class-conditional (ClassBatchNorm of the labels (N,))."""

    resolution: int = 64
    channels: int = 3
    width: int = 64  # channels of the last hidden layer (ngf)
    conv_impl: str = "auto"
    bn_axis_name: str | None = None
    num_classes: int = 0

    @nn.compact
    def __call__(self, z: jnp.ndarray, labels: jnp.ndarray | None = None, train: bool = True) -> jnp.ndarray:
        def bn(h):
            if self.num_classes:
                return ClassBatchNorm(self.num_classes, axis_name=self.bn_axis_name)(h, labels, train)
            return _bn(train, self.bn_axis_name)(h)

        n_up = int(math.log2(self.resolution // 4))
        features = self.width * 2 ** (n_up - 1)
        # A Dense to 4x4xF is Radford's 4x4 transposed convolution of the 1x1 latent.
        h = nn.Dense(4 * 4 * features, use_bias=False, kernel_init=_init)(z).reshape(-1, 4, 4, features)
        h = nn.relu(bn(h))
        for i in range(n_up):
            last = i == n_up - 1
            features = self.channels if last else features // 2
            h = ConvTranspose(features, (4, 4), (2, 2), "SAME", use_bias=last, kernel_init=_init,
                              impl=self.conv_impl)(h)
            h = jnp.tanh(h) if last else nn.relu(bn(h))
        return h


class RadfordDiscriminator(nn.Module):
    """images (N, S, S, C) (and labels (N,)) -> logits (N,): 4x4 stride-2 convolutions down to 4x4,
    LeakyReLU(0.2), BN on all but the first layer, then a linear map of the 4x4 features (Radford's
    last 4x4 conv)."""

    width: int = 64
    conv_impl: str = "auto"
    bn_axis_name: str | None = None
    num_classes: int = 0
    conditioning: str = "concat"  # with num_classes > 0: conditioning.DISCRIMINATOR_CONDITIONINGS

    @nn.compact
    def __call__(self, x: jnp.ndarray, labels: jnp.ndarray | None = None, train: bool = True) -> jnp.ndarray:
        conditioning = discriminator_conditioning(self.conditioning, self.num_classes)
        h, features, first = conditioning.inputs(x, labels, self.num_classes), self.width, True
        while h.shape[1] > 4:
            h = Conv(features, (4, 4), (2, 2), ((1, 1), (1, 1)), use_bias=first, kernel_init=_init,
                     impl=self.conv_impl)(h)
            if not first:
                h = _bn(train, self.bn_axis_name)(h)
            h, features, first = nn.leaky_relu(h, 0.2), features * 2, False
        self.sow("intermediates", FEATURES, h)  # VAE-GAN's reconstruction layer
        return conditioning.head(h.reshape(h.shape[0], -1), labels, self.num_classes, kernel_init=_init)


WIDTHS = {"generator_width": Field(64, POSITIVE),  # G's channels before its output layer (ngf)
          "discriminator_width": Field(64, POSITIVE),  # D's first layer's channels (ndf)
          # with model.num_classes > 0, how D reads the label (conditioning.DISCRIMINATOR_CONDITIONINGS)
          "discriminator_conditioning": DISCRIMINATOR_CONDITIONING_FIELD}


@register("dcgan_tutorial", {**WIDTHS, "dropout_rate": Field(0.3, FRACTION)}, num_classes=True)  # D's, per example
def build_dcgan_tutorial(cfg: ml_collections.ConfigDict, example_shape: tuple[int, ...]) -> dict[str, nn.Module]:
    if tuple(example_shape[:2]) != (28, 28):
        raise ConfigError(f"model.name='dcgan_tutorial' needs 28x28 images, got data of shape {example_shape}")
    s, axis = settings(cfg), cfg.get("axis_name", None)
    k = s["num_classes"]
    return {"generator": TutorialGenerator(example_shape[2], s["conv_impl"], axis, s["generator_width"], k),
            "discriminator": TutorialDiscriminator(s["dropout_rate"], s["conv_impl"], axis, s["discriminator_width"],
                                                   k, s["discriminator_conditioning"])}


@register("dcgan", WIDTHS, num_classes=True)
def build_dcgan(cfg: ml_collections.ConfigDict, example_shape: tuple[int, ...]) -> dict[str, nn.Module]:
    size = example_shape[0]
    if len(example_shape) != 3 or example_shape[1] != size or size < 8 or size & (size - 1):
        raise ConfigError(f"model.name='dcgan' needs square images of a power-of-two size >= 8, "
                          f"got data of shape {example_shape}")
    s, axis = settings(cfg), cfg.get("axis_name", None)
    k = s["num_classes"]
    return {"generator": RadfordGenerator(size, example_shape[2], s["generator_width"], s["conv_impl"], axis, k),
            "discriminator": RadfordDiscriminator(s["discriminator_width"], s["conv_impl"], axis, k,
                                                  s["discriminator_conditioning"])}
