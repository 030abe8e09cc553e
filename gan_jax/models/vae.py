"""The VAE of Kingma & Welling (2013): diagonal Gaussian posterior q(z|x) with the
reparameterization trick, N(0, I) prior, and an MLP or convolutional encoder/decoder with ReLU or tanh
hidden units (model.activation). The decoder returns per-pixel Bernoulli logits or Gaussian means (the
likelihood is chosen in losses.py)."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from gan_jax.errors import ConfigError
from gan_jax.models import NON_NEGATIVE, POSITIVE, Field, register, settings
from gan_jax.models.layers import ACTIVATIONS, Conv, ConvTranspose


class VAE(nn.Module):
    """x (N, H, W, C) in [0, 1] -> (decoder output (N, H, W, C), posterior mean (N, L), log-variance (N, L))."""

    image_shape: tuple[int, int, int]
    latent_dim: int = 16
    hidden: int = 512
    depth: int = 2
    conv: bool = False
    conv_impl: str = "auto"
    activation: str = "relu"  # every hidden layer's nonlinearity: a key of layers.ACTIVATIONS

    def setup(self):
        h, w, c = self.image_shape
        if self.conv:
            self.enc = [Conv(32, (4, 4), (2, 2), "SAME", impl=self.conv_impl),
                        Conv(64, (4, 4), (2, 2), "SAME", impl=self.conv_impl)]
            self.dec_in = nn.Dense(math.ceil(h / 4) * math.ceil(w / 4) * 64)
            self.dec = [ConvTranspose(32, (4, 4), (2, 2), "SAME", impl=self.conv_impl),
                        ConvTranspose(c, (4, 4), (2, 2), "SAME", impl=self.conv_impl)]
        else:
            self.enc = [nn.Dense(self.hidden) for _ in range(self.depth)]
            self.dec = [nn.Dense(self.hidden) for _ in range(self.depth)] + [nn.Dense(h * w * c)]
        self.enc_hidden = nn.Dense(self.hidden) if self.conv else None
        self.posterior = nn.Dense(2 * self.latent_dim)

    def encode(self, x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """x (N, H, W, C) -> posterior mean and log-variance, each (N, latent_dim)."""
        act = ACTIVATIONS[self.activation]
        h = x if self.conv else x.reshape(x.shape[0], -1)
        for layer in self.enc:
            h = act(layer(h))
        if self.conv:
            h = act(self.enc_hidden(h.reshape(h.shape[0], -1)))
        mean, logvar = jnp.split(self.posterior(h), 2, axis=-1)
        return mean, logvar

    def decode(self, z: jnp.ndarray) -> jnp.ndarray:
        """z (N, latent_dim) -> decoder output (N, H, W, C): Bernoulli logits or Gaussian means."""
        h, w, c = self.image_shape
        act = ACTIVATIONS[self.activation]
        if self.conv:
            y = act(self.dec_in(z)).reshape(z.shape[0], math.ceil(h / 4), math.ceil(w / 4), 64)
            y = self.dec[1](act(self.dec[0](y)))
            return y[:, :h, :w, :]
        y = z
        for layer in self.dec[:-1]:
            y = act(layer(y))
        return self.dec[-1](y).reshape(z.shape[0], h, w, c)

    def __call__(self, x: jnp.ndarray, train: bool = True, eps: jnp.ndarray | None = None
                 ) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
        """eps (N, latent_dim): the N(0, I) noise of the reparameterization; drawn from rng 'latent' if None."""
        mean, logvar = self.encode(x)
        if eps is None:
            eps = jax.random.normal(self.make_rng("latent"), mean.shape, mean.dtype)
        z = mean + jnp.exp(0.5 * logvar) * eps  # reparameterization: gradients flow through mean, logvar
        return self.decode(z), mean, logvar


@register("vae", {
    # Every config carries it (older ones do); relu or tanh (Burda et al. 2015), of layers.ACTIVATIONS.
    "activation": Field("relu", choices=("relu", "tanh"), every_config=True),
    "architecture": Field("mlp", choices=("mlp", "conv")),
    "hidden": Field(512, POSITIVE),  # units of each hidden layer
    "depth": Field(2, NON_NEGATIVE),  # hidden layers of the encoder, and of the decoder
})
def build_vae(cfg: ml_collections.ConfigDict, example_shape: tuple[int, ...]) -> dict[str, nn.Module]:
    if len(example_shape) != 3:
        raise ConfigError(f"model.name='vae' needs image data (H, W, C), got data of shape {example_shape}")
    s = settings(cfg)
    return {"vae": VAE(tuple(example_shape), s["latent_dim"], s["hidden"], s["depth"], s["architecture"] == "conv",
                       s["conv_impl"], s["activation"])}
