"""R3GAN's modernized ResNet (Huang et al. 2025, "The GAN is dead; long live the GAN! A Modern GAN
Baseline"; brownvc/R3GAN, R3GAN/Networks.py) for 32x32 and 64x64 images.

Stages of `blocks_per_stage` inverted bottlenecks: 1x1 conv (C -> E C), bias + LeakyReLU(0.2),
grouped 3x3 conv (`cardinality` groups), bias + LeakyReLU, 1x1 conv back to C, added to the input.
No normalization; fix-up style initialization: every kernel from N(0, gain^2 / fan_in), the
bottleneck's first two with gain sqrt(2 / 1.04) * L^(-1/4) (L: all blocks of the network), its last
at zero, so each block starts as the identity. G: z (through a class embedding concatenated where
model.num_classes > 0) times a learned 4x4 basis, then per stage a 1x1 conv where the width changes
and 2x upsampling by the [1, 3, 3, 1] filter, a linear 1x1 conv to the image (no tanh). D mirrors it:
a 1x1 conv from the image, stages ending in [1, 3, 3, 1] downsampling, a depthwise 4x4 conv and a
linear map to the logit, or conditionally to an embedding whose inner product with the class's
embedding is the logit (R3GAN's projection has no unconditional term).

Widths as R3GAN's presets: CIFAR10 (32x32) is 4 stages of generator_width = discriminator_width
= 768 channels, cardinality 96, 2 blocks, expansion 2, z of 64; FFHQ-64 adds a 64x64 stage of half
the width and cardinality."""

import math

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from gan_jax.errors import ConfigError
from gan_jax.models import POSITIVE, Field, register, settings
from gan_jax.models.layers import Conv
from gan_jax.models.sngan import image_resolution
from gan_jax.ops.resample import downsample_2x, upsample_2x

# resolution -> each stage's divisor of the width and cardinality, G's order (4x4 first)
STAGE_DIVISORS = {32: (1, 1, 1, 1), 64: (1, 1, 1, 1, 2)}
LEAKY_RELU_GAIN = math.sqrt(2 / (1 + 0.2 ** 2))  # R3GAN's BiasedActivation.Gain


def msr_init(gain: float) -> nn.initializers.Initializer:
    """R3GAN's MSRInitializer: N(0, gain^2 / fan_in), fan_in = input channels per group x kernel taps;
    gain 0: zeros."""
    return nn.initializers.variance_scaling(gain * gain, "fan_in", "normal") if gain else nn.initializers.zeros


def conv1x1(features: int, impl: str, gain: float = 1.0, name: str | None = None) -> Conv:
    return Conv(features, (1, 1), use_bias=False, kernel_init=msr_init(gain), impl=impl, name=name)


class BiasedLeakyReLU(nn.Module):
    """x (..., C) -> LeakyReLU_0.2(x + b), b (C,) starting at 0."""

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return nn.leaky_relu(x + self.param("bias", nn.initializers.zeros, (x.shape[-1],)), 0.2)


class InvertedBottleneck(nn.Module):
    """x (N, H, W, C) -> x + f(x) (N, H, W, C), f: C -> expansion C (grouped 3x3) -> C."""

    cardinality: int
    expansion: int
    total_blocks: int  # R3GAN's VarianceScalingParameter: the blocks of the whole network
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        channels, wide = x.shape[-1], x.shape[-1] * self.expansion
        gain = LEAKY_RELU_GAIN * self.total_blocks ** (-1 / 4)  # (2 * 3 linear layers - 2) = 4
        y = conv1x1(wide, self.conv_impl, gain)(x)
        y = Conv(wide, (3, 3), use_bias=False, kernel_init=msr_init(gain), impl=self.conv_impl,
                 feature_group_count=self.cardinality)(BiasedLeakyReLU()(y))
        return x + conv1x1(channels, self.conv_impl, 0.0)(BiasedLeakyReLU()(y))


class R3GanGenerator(nn.Module):
    """z (N, latent_dim), labels (N,) int32 or None -> images (N, S, S, channels), unbounded (R3GAN's
    G has no output nonlinearity). Conditional: z concatenated with a latent_dim-wide class embedding."""

    resolution: int = 32
    channels: int = 3
    width: int = 768
    cardinality: int = 96
    blocks_per_stage: int = 2
    expansion: int = 2
    num_classes: int = 0
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, z: jnp.ndarray, labels: jnp.ndarray | None = None, train: bool = True) -> jnp.ndarray:
        divisors = STAGE_DIVISORS[self.resolution]
        total = self.blocks_per_stage * len(divisors)
        x = z
        if self.num_classes:  # R3GAN: a bias-free linear map of the one-hot label, MSR-initialized
            embed = nn.Embed(self.num_classes, z.shape[-1], embedding_init=nn.initializers.normal(
                1 / math.sqrt(self.num_classes)), name="class_embedding")
            x = jnp.concatenate([z, embed(labels)], axis=-1)
        width = self.width // divisors[0]
        basis = self.param("basis", nn.initializers.normal(1.0), (4, 4, width))
        h = basis * nn.Dense(width, use_bias=False, kernel_init=msr_init(1.0))(x)[:, None, None, :]
        for stage, divisor in enumerate(divisors):
            if stage:
                if h.shape[-1] != self.width // divisor:
                    h = conv1x1(self.width // divisor, self.conv_impl)(h)
                h = upsample_2x(h)
            for _ in range(self.blocks_per_stage):
                h = InvertedBottleneck(self.cardinality // divisor, self.expansion, total, self.conv_impl)(h)
        return conv1x1(self.channels, self.conv_impl, name="to_image")(h)


class R3GanDiscriminator(nn.Module):
    """images (N, S, S, C), labels (N,) int32 or None -> logits (N,)."""

    resolution: int = 32
    width: int = 768
    cardinality: int = 96
    blocks_per_stage: int = 2
    expansion: int = 2
    num_classes: int = 0
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x: jnp.ndarray, labels: jnp.ndarray | None = None, train: bool = True) -> jnp.ndarray:
        divisors = STAGE_DIVISORS[self.resolution][::-1]
        total = self.blocks_per_stage * len(divisors)
        h = conv1x1(self.width // divisors[0], self.conv_impl, name="from_image")(x)
        for stage, divisor in enumerate(divisors):
            for _ in range(self.blocks_per_stage):
                h = InvertedBottleneck(self.cardinality // divisor, self.expansion, total, self.conv_impl)(h)
            if stage < len(divisors) - 1:
                h = downsample_2x(h)
                if h.shape[-1] != self.width // divisors[stage + 1]:
                    h = conv1x1(self.width // divisors[stage + 1], self.conv_impl)(h)
        channels = h.shape[-1]
        h = Conv(channels, (4, 4), padding="VALID", use_bias=False, kernel_init=msr_init(1.0), impl=self.conv_impl,
                 feature_group_count=channels, name="basis")(h).reshape(h.shape[0], channels)
        out = channels if self.num_classes else 1
        phi = nn.Dense(out, use_bias=False, kernel_init=msr_init(1.0))(h)
        if not self.num_classes:
            return phi[:, 0]
        embed = nn.Embed(self.num_classes, out, embedding_init=nn.initializers.normal(
            1 / math.sqrt(out) / math.sqrt(self.num_classes)), name="class_embedding")
        return jnp.sum(phi * embed(labels), axis=-1)


FIELDS = {"generator_width": Field(768, POSITIVE), "discriminator_width": Field(768, POSITIVE),
          "cardinality": Field(96, POSITIVE),  # groups of the 3x3 convolutions (halved with the width)
          "blocks_per_stage": Field(2, POSITIVE), "expansion": Field(2, POSITIVE)}


@register("r3gan", FIELDS, num_classes=True)
def build_r3gan(cfg: ml_collections.ConfigDict, example_shape: tuple[int, ...]) -> dict[str, nn.Module]:
    resolution = image_resolution("r3gan", example_shape, STAGE_DIVISORS)
    s = settings(cfg)
    num_classes = s["num_classes"]
    for field in ("generator_width", "discriminator_width"):
        for divisor in set(STAGE_DIVISORS[resolution]):
            width, groups = s[field] // divisor, s["cardinality"] // divisor
            if s[field] % divisor or s["cardinality"] % divisor or groups == 0 or (width * s["expansion"]) % groups:
                raise ConfigError(f"model.cardinality={s['cardinality']} does not divide the grouped convolutions of "
                                  f"model.{field}={s[field]} x model.expansion={s['expansion']} at every stage "
                                  f"(widths / {divisor}); accepted: a divisor of them")
    shared = (s["cardinality"], s["blocks_per_stage"], s["expansion"], num_classes, s["conv_impl"])
    return {"generator": R3GanGenerator(resolution, example_shape[2], s["generator_width"], *shared),
            "discriminator": R3GanDiscriminator(resolution, s["discriminator_width"], *shared)}
