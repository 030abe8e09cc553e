"""Model registry. A model is one builder function, registered by name, that turns
`config.model` and the data's example shape into the named networks of an objective:
`{'generator': G, 'discriminator': D}` for GANs, `{'vae': V}` for VAEs, `{'encoder': E, 'generator': G,
'discriminator': D}` for VAE-GANs, `{'classifier': C}`."""

from collections.abc import Callable

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from gan_jax.errors import ConfigError

ModelBuilder = Callable[[ml_collections.ConfigDict, tuple[int, ...]], dict[str, nn.Module]]
MODELS: dict[str, ModelBuilder] = {}


def register(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator: `@register('my_model')` makes `config.model.name = 'my_model'` build it."""

    def wrap(builder: ModelBuilder) -> ModelBuilder:
        MODELS[name] = builder
        return builder

    return wrap


def build(model_config: ml_collections.ConfigDict, example_shape: tuple[int, ...]) -> dict[str, nn.Module]:
    """Builds the networks named by `model_config.name` for examples of `example_shape` (H, W, C) or (D,);
    with model.pack = m > 1 the discriminator sees m samples at a time (PacGAN, `Packed`)."""
    if model_config.name not in MODELS:
        raise ConfigError(f"model.name={model_config.name!r} is unknown; accepted: {', '.join(sorted(MODELS))}")
    nets = MODELS[model_config.name](model_config, tuple(example_shape))
    pack = model_config.get("pack", 1)
    if pack > 1 and "discriminator" in nets:
        nets["discriminator"] = Packed(nets["discriminator"], pack)
    return nets


class Packed(nn.Module):
    """PacGAN (Lin et al. 2018): D judges `pack` samples jointly. Examples (N, *shape) are grouped in
    consecutive runs of `pack` and concatenated along their last axis (channels, or features of 2D
    points): D sees (N / pack, *shape[:-1], pack * shape[-1]) and returns logits (N / pack,). A batch
    split over devices must hold whole groups (checked by the step)."""

    inner: nn.Module
    pack: int

    @nn.compact
    def __call__(self, x, train: bool = True):
        n = x.shape[0]
        if self.is_initializing() and n % self.pack:
            x = jnp.concatenate([x] * self.pack)  # values do not matter at init; any pack works
            n = x.shape[0]
        if n % self.pack:
            raise ValueError(f"model.pack={self.pack}: {n} examples do not split into groups of {self.pack}")
        groups = x.reshape(n // self.pack, self.pack, *x.shape[1:])
        groups = jnp.moveaxis(groups, 1, -2)  # (N / m, *shape[:-1], m, C): sample j at channels [jC, (j + 1)C)
        return self.inner(groups.reshape(*groups.shape[:-2], -1), train=train)


# Importing the model files registers them.
from gan_jax.models import classifier, dcgan, mlp_gan, vae, vaegan  # noqa: E402,F401
