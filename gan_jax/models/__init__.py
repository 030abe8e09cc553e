"""Model registry. A model is one builder function, registered by name, that turns
`config.model` and the data's example shape into the named networks of an objective:
`{'generator': G, 'discriminator': D}` for GANs, `{'vae': V}` for VAEs, `{'classifier': C}`."""

from collections.abc import Callable

import flax.linen as nn
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
    """Builds the networks named by `model_config.name` for examples of `example_shape` (H, W, C) or (D,)."""
    if model_config.name not in MODELS:
        raise ConfigError(f"model.name={model_config.name!r} is unknown; accepted: {', '.join(sorted(MODELS))}")
    return MODELS[model_config.name](model_config, tuple(example_shape))


# Importing the model files registers them.
from gan_jax.models import classifier, dcgan, mlp_gan, vae  # noqa: E402,F401
