"""VAE-GAN networks (Larsen et al. 2016): a convolutional encoder q(z|x) beside a DCGAN generator (the
decoder) and discriminator. `vaegan_tutorial` builds on the TF tutorial's 28x28 models, `vaegan_dcgan`
on Radford's (square power-of-two images); the encoder mirrors the discriminator's strides."""

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from gan_jax.models import MODEL_FIELDS, MODELS, POSITIVE, Field, register, settings
from gan_jax.models.layers import Conv


class Encoder(nn.Module):
    """images (N, H, W, C) in [-1, 1] -> posterior mean and log-variance, each (N, latent_dim): 5x5
    stride-2 convolutions with BatchNorm and ReLU, a hidden dense layer, then the posterior."""

    latent_dim: int
    widths: tuple[int, ...] = (64, 128, 256)
    hidden: int = 2048
    conv_impl: str = "auto"
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = True) -> tuple[jnp.ndarray, jnp.ndarray]:
        bn = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9, axis_name=self.bn_axis_name)
        h = x
        for width in self.widths:
            h = nn.relu(bn()(Conv(width, (5, 5), (2, 2), "SAME", use_bias=False, impl=self.conv_impl)(h)))
        h = nn.relu(bn()(nn.Dense(self.hidden, use_bias=False)(h.reshape(h.shape[0], -1))))
        mean, logvar = jnp.split(nn.Dense(2 * self.latent_dim)(h), 2, axis=-1)
        return mean, logvar


def _with_encoder(base: str, widths: tuple[int, ...]):
    def build(cfg: ml_collections.ConfigDict, example_shape: tuple[int, ...]) -> dict[str, nn.Module]:
        nets = MODELS[base](cfg, example_shape)
        s = settings(cfg)
        encoder = Encoder(s["latent_dim"], widths, s["hidden"], s["conv_impl"], cfg.get("axis_name", None))
        return {"encoder": encoder, **nets}

    return build


# The base model's fields, and the encoder's hidden dense layer (Larsen et al.: 2048 units at 64x64).
register("vaegan_tutorial", {**MODEL_FIELDS["dcgan_tutorial"], "hidden": Field(512, POSITIVE)})(
    _with_encoder("dcgan_tutorial", (64, 128)))
register("vaegan_dcgan", {**MODEL_FIELDS["dcgan"], "hidden": Field(2048, POSITIVE)})(
    _with_encoder("dcgan", (64, 128, 256)))
