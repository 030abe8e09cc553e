"""The ResNet GANs of Miyato et al. 2018 (SNGAN, appendix B) and Gulrajani et al. 2017 (WGAN-GP's
CIFAR-10 ResNet), with Miyato & Koyama 2018's class conditioning (cGAN-PD): conditional BatchNorm
in G, the projection head in D, where model.num_classes > 0.

Layouts as in mimicry (torch_mimicry/nets/sngan/sngan_32.py, sngan_48.py): for 32x32, G maps z
through a dense layer to 4x4xW, three upsampling blocks of W channels, BN-ReLU-conv3x3-tanh; D has
four blocks of W' channels (down, down, -, -), ReLU, a global sum pool and a linear head. For 48x48 G
starts at 6x6x(W) and halves the channels per block (W/2, W/4, W/8); D doubles them (W'/16 ... W'),
downsampling four times. WGAN-GP's ResNet (igul222/improved_wgan_training, gan_cifar_resnet.py) is
the 32x32 layout with W = W' = 128, a mean pool instead of the sum, and no spectral norm.

D's spectral normalization is not in these modules: the GAN objective divides every D kernel
(conv, dense and the projection's class embedding) by its spectral norm (model.spectral_norm)."""

import functools

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from gan_jax.errors import ConfigError
from gan_jax.models import POSITIVE, Field, register, settings
from gan_jax.models.conditioning import ClassBatchNorm, ProjectionHead
from gan_jax.models.layers import Conv
from gan_jax.models.resnet_blocks import DBlock, GBlock, PlainBatchNorm, xavier_uniform

# resolution -> (G's first map size, G's channel divisors: the first map's, then each block's output)
GENERATOR_LAYOUTS = {32: (4, (1, 1, 1, 1)), 48: (6, (1, 2, 4, 8))}
# resolution -> D's blocks as (channel divisor, downsample), the first one the "optimized" block
DISCRIMINATOR_LAYOUTS = {32: ((1, True), (1, True), (1, False), (1, False)),
                         48: ((16, True), (8, True), (4, True), (2, True), (1, False))}
POOLS = {"sum": jnp.sum, "mean": jnp.mean}  # D's global pool over the last feature map


class ResNetGenerator(nn.Module):
    """z (N, latent_dim), labels (N,) int32 or None -> images (N, S, S, channels) in [-1, 1];
    S = resolution (a key of GENERATOR_LAYOUTS). num_classes > 0: class-conditional BatchNorm in the
    blocks (the last BatchNorm stays unconditional, as in SNGAN's code)."""

    resolution: int = 32
    channels: int = 3
    width: int = 256  # mimicry's ngf
    num_classes: int = 0
    conv_impl: str = "auto"
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, z: jnp.ndarray, labels: jnp.ndarray | None = None, train: bool = True) -> jnp.ndarray:
        bottom, divisors = GENERATOR_LAYOUTS[self.resolution]
        features = self.width // divisors[0]
        h = nn.Dense(bottom * bottom * features, kernel_init=xavier_uniform())(z)
        h = h.reshape(z.shape[0], bottom, bottom, features)
        if self.num_classes:
            norm = functools.partial(ClassBatchNorm, self.num_classes, axis_name=self.bn_axis_name)
        else:
            norm = functools.partial(PlainBatchNorm, axis_name=self.bn_axis_name)
        for divisor in divisors[1:]:
            h = GBlock(self.width // divisor, upsample=True, norm=norm, conv_impl=self.conv_impl)(h, labels, train)
        h = nn.relu(PlainBatchNorm(axis_name=self.bn_axis_name)(h, train=train))
        h = Conv(self.channels, (3, 3), kernel_init=xavier_uniform(), impl=self.conv_impl)(h)
        return jnp.tanh(h)


class ResNetDiscriminator(nn.Module):
    """images (N, S, S, C), labels (N,) int32 or None -> logits (N,); S a key of
    DISCRIMINATOR_LAYOUTS. num_classes > 0: the projection head (Miyato & Koyama 2018)."""

    resolution: int = 32
    width: int = 128  # mimicry's ndf: the last block's channels
    num_classes: int = 0
    pool: str = "sum"  # a key of POOLS
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x: jnp.ndarray, labels: jnp.ndarray | None = None, train: bool = True) -> jnp.ndarray:
        h = x
        for i, (divisor, down) in enumerate(DISCRIMINATOR_LAYOUTS[self.resolution]):
            h = DBlock(self.width // divisor, downsample=down, preactivation=i > 0, conv_impl=self.conv_impl)(h)
        phi = POOLS[self.pool](nn.relu(h), axis=(1, 2))
        return ProjectionHead(self.num_classes, kernel_init=xavier_uniform())(phi, labels)


def image_resolution(name: str, example_shape: tuple[int, ...], accepted) -> int:
    """The side of square images (S, S, C) whose S is in `accepted`; else a ConfigError naming the model."""
    size = example_shape[0]
    if len(example_shape) != 3 or example_shape[1] != size or size not in accepted:
        raise ConfigError(f"model.name={name!r} needs square images of side {', '.join(map(str, sorted(accepted)))}, "
                          f"got data of shape {example_shape}")
    return size


def _build(name: str, pool: str, cfg: ml_collections.ConfigDict,
           example_shape: tuple[int, ...]) -> dict[str, nn.Module]:
    resolution = image_resolution(name, example_shape, GENERATOR_LAYOUTS)
    s, axis = settings(cfg), cfg.get("axis_name", None)
    num_classes = s["num_classes"]
    return {"generator": ResNetGenerator(resolution, example_shape[2], s["generator_width"], num_classes,
                                         s["conv_impl"], axis),
            "discriminator": ResNetDiscriminator(resolution, s["discriminator_width"], num_classes, pool,
                                                 s["conv_impl"])}


@register("sngan", {"generator_width": Field(256, POSITIVE),  # ngf: 256 for 32x32, 512 for 48x48
                    "discriminator_width": Field(128, POSITIVE)},  # ndf: 128 for 32x32, 1024 for 48x48
          num_classes=True)
def build_sngan(cfg: ml_collections.ConfigDict, example_shape: tuple[int, ...]) -> dict[str, nn.Module]:
    return _build("sngan", "sum", cfg, example_shape)


@register("wgan_gp_resnet", {"generator_width": Field(128, POSITIVE), "discriminator_width": Field(128, POSITIVE)},
          num_classes=True)
def build_wgan_gp_resnet(cfg: ml_collections.ConfigDict, example_shape: tuple[int, ...]) -> dict[str, nn.Module]:
    return _build("wgan_gp_resnet", "mean", cfg, example_shape)
