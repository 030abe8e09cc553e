"""BigGAN's ResNet (Brock et al. 2019) for 32x32, 64x64 and 128x128 images, after BigGAN-PyTorch
(ajbrock/BigGAN-PyTorch, BigGAN.py G_arch/D_arch and layers.py): blocks of G_ch (generator_width)
and D_ch (discriminator_width) multiples, D "wide" (hidden channels = output channels), one
self-attention block at model.attention_resolution in each network (0: none), orthogonal
initialization of every kernel and embedding, global sum pool and the projection head in D.

G's BatchNorms are BigGAN's conditioned ones: gain 1 + W_g c and bias W_b c from a vector c per
block. With model.hierarchical_latent z is split into one chunk for the dense layer and one per
block (Brock et al.'s hierarchical latent space), and c is the block's chunk, preceded by a shared
class embedding (model.shared_embedding_dim) when model.num_classes > 0. Unconditional and without
the hierarchy, the blocks take plain BatchNorm.

StudioGAN's CIFAR-10 BigGAN (src/configs/CIFAR10/BigGAN.yaml, models/big_resnet.py) is this
network at 32x32 with G_ch 96, D 192 channels (discriminator_width 48 here, as BigGAN-PyTorch's
32x32 D has 4 x D_ch channels), z 80, attention at 16x16.

BigGAN also spectrally normalizes G's weights; here only D's are (model.spectral_norm, applied by
the GAN objective): G trains without it."""

import functools

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from gan_jax.errors import ConfigError
from gan_jax.models import NON_NEGATIVE, POSITIVE, Field, register, settings
from gan_jax.models.conditioning import ConditionedBatchNorm, ProjectionHead
from gan_jax.models.layers import Conv
from gan_jax.models.resnet_blocks import DBlock, GBlock, PlainBatchNorm, SelfAttention
from gan_jax.models.sngan import image_resolution

# resolution -> G's channel multiples of G_ch: the 4x4 map's, then each upsampling block's output
GENERATOR_LAYOUTS = {32: (4, 4, 4, 4), 64: (16, 16, 8, 4, 2), 128: (16, 16, 8, 4, 2, 1)}
# resolution -> D's blocks as (channel multiple of D_ch, downsample), the first one the "optimized" block
DISCRIMINATOR_LAYOUTS = {32: ((4, True), (4, True), (4, False), (4, False)),
                         64: ((1, True), (2, True), (4, True), (8, True), (16, False)),
                         128: ((1, True), (2, True), (4, True), (8, True), (16, True), (16, False))}
ORTHOGONAL = nn.initializers.orthogonal()


class BigGanGenerator(nn.Module):
    """z (N, latent_dim), labels (N,) int32 or None -> images (N, S, S, channels) in [-1, 1]. With
    `hierarchical`, latent_dim must split into len(blocks) + 1 equal chunks."""

    resolution: int = 128
    channels: int = 3
    width: int = 64  # G_ch
    num_classes: int = 0
    shared_dim: int = 128
    hierarchical: bool = True
    attention_resolution: int = 0
    conv_impl: str = "auto"
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, z: jnp.ndarray, labels: jnp.ndarray | None = None, train: bool = True) -> jnp.ndarray:
        multiples = GENERATOR_LAYOUTS[self.resolution]
        n_blocks = len(multiples) - 1
        chunks = jnp.split(z, n_blocks + 1, axis=-1) if self.hierarchical else [z] + [None] * n_blocks
        shared = (nn.Embed(self.num_classes, self.shared_dim, embedding_init=ORTHOGONAL, name="shared")(labels)
                  if self.num_classes else None)
        conds = [jnp.concatenate([c for c in (shared, chunk) if c is not None], -1)
                 if shared is not None or chunk is not None else None for chunk in chunks[1:]]
        if conds[0] is None:
            norm = functools.partial(PlainBatchNorm, axis_name=self.bn_axis_name)
        else:
            norm = functools.partial(ConditionedBatchNorm, axis_name=self.bn_axis_name, kernel_init=ORTHOGONAL)
        features = self.width * multiples[0]
        h = nn.Dense(4 * 4 * features, kernel_init=ORTHOGONAL)(chunks[0]).reshape(z.shape[0], 4, 4, features)
        for multiple, cond in zip(multiples[1:], conds, strict=True):
            h = GBlock(self.width * multiple, norm=norm, conv_impl=self.conv_impl, kernel_init=ORTHOGONAL,
                       shortcut_init=ORTHOGONAL)(h, cond, train)
            if h.shape[1] == self.attention_resolution:
                h = SelfAttention(self.conv_impl)(h)
        h = nn.relu(PlainBatchNorm(axis_name=self.bn_axis_name)(h, train=train))
        return jnp.tanh(Conv(self.channels, (3, 3), kernel_init=ORTHOGONAL, impl=self.conv_impl)(h))


class BigGanDiscriminator(nn.Module):
    """images (N, S, S, C), labels (N,) int32 or None -> logits (N,). The self-attention block
    follows the first block whose output has side attention_resolution."""

    resolution: int = 128
    width: int = 64  # D_ch
    num_classes: int = 0
    attention_resolution: int = 0
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x: jnp.ndarray, labels: jnp.ndarray | None = None, train: bool = True) -> jnp.ndarray:
        h, attended = x, False
        for i, (multiple, down) in enumerate(DISCRIMINATOR_LAYOUTS[self.resolution]):
            features = self.width * multiple
            h = DBlock(features, downsample=down, preactivation=i > 0, hidden=features, conv_impl=self.conv_impl,
                       kernel_init=ORTHOGONAL, shortcut_init=ORTHOGONAL)(h)
            if h.shape[1] == self.attention_resolution and not attended:
                h, attended = SelfAttention(self.conv_impl)(h), True
        phi = jnp.sum(nn.relu(h), axis=(1, 2))
        return ProjectionHead(self.num_classes, kernel_init=ORTHOGONAL, embedding_init=ORTHOGONAL)(phi, labels)


FIELDS = {"generator_width": Field(64, POSITIVE),  # G_ch
          "discriminator_width": Field(64, POSITIVE),  # D_ch
          "attention_resolution": Field(64, NON_NEGATIVE),  # side of the maps with self-attention; 0: none
          "shared_embedding_dim": Field(128, POSITIVE),  # the class embedding shared by G's blocks
          "hierarchical_latent": Field(True)}


@register("biggan", FIELDS, num_classes=True)
def build_biggan(cfg: ml_collections.ConfigDict, example_shape: tuple[int, ...]) -> dict[str, nn.Module]:
    resolution = image_resolution("biggan", example_shape, GENERATOR_LAYOUTS)
    s, axis = settings(cfg), cfg.get("axis_name", None)
    num_classes, slots = s["num_classes"], len(GENERATOR_LAYOUTS[resolution])
    if s["hierarchical_latent"] and s["latent_dim"] % slots:
        raise ConfigError(f"model.latent_dim={s['latent_dim']} does not split into the {slots} equal chunks of "
                          f"model.hierarchical_latent at {resolution}x{resolution}; accepted: a multiple of {slots}")
    return {"generator": BigGanGenerator(resolution, example_shape[2], s["generator_width"], num_classes,
                                         s["shared_embedding_dim"], s["hierarchical_latent"],
                                         s["attention_resolution"], s["conv_impl"], axis),
            "discriminator": BigGanDiscriminator(resolution, s["discriminator_width"], num_classes,
                                                 s["attention_resolution"], s["conv_impl"])}
