"""Model registry. A model is one builder function, registered by name with the `config.model` fields
it reads (`Field`: default and accepted values), that turns `config.model` and the data's example
shape into the named networks of an objective: `{'generator': G, 'discriminator': D}` for GANs,
`{'vae': V}` for VAEs, `{'encoder': E, 'generator': G, 'discriminator': D}` for VAE-GANs,
`{'classifier': C}`. A field's declaration here is its one home: the builder reads it through
`settings`, and gan_jax/config.py's base_config (SHARED_FIELDS), validate and ranges() read the
declarations."""

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from gan_jax.errors import ConfigError
from gan_jax.models.layers import MODULE_IMPLS

ModelBuilder = Callable[[ml_collections.ConfigDict, tuple[int, ...]], dict[str, nn.Module]]

# Numeric ranges (low, high, low included, high included; None: unbounded), as config.RANGES.
POSITIVE = (0, None, False, None)
NON_NEGATIVE = (0, None, True, None)
FRACTION = (0, 1, True, False)  # a probability that leaves something: [0, 1)


@dataclasses.dataclass(frozen=True)
class Field:
    """A `config.model` field: its default (what a config without it means) and the accepted values,
    a numeric `range` (checked on every element of a tuple) or the names in `choices`. `every_config`:
    base_config writes it into every config, whatever the model (a field configs have always carried)."""

    default: Any
    range: tuple | None = None
    choices: tuple[str, ...] | None = None
    every_config: bool = False


MODELS: dict[str, ModelBuilder] = {}
MODEL_FIELDS: dict[str, dict[str, Field]] = {}  # model name -> the fields it reads beyond SHARED_FIELDS
CLASS_MODELS: set[str] = set()  # the models that read model.num_classes (register(..., num_classes=True))
DEFAULT_MODEL = "dcgan_tutorial"
# The model fields several models or objectives read, in every config (base_config writes them).
SHARED_FIELDS = {
    "latent_dim": Field(100, POSITIVE, every_config=True),
    "conv_impl": Field("auto", choices=MODULE_IMPLS, every_config=True),  # gan_jax/ops/conv.py
    # GANs: D's kernels divided by their spectral norms (Miyato et al. 2018)
    "spectral_norm": Field(False, every_config=True),
    # GANs: D judges this many samples at once (PacGAN, models.Packed); 1: unpacked
    "pack": Field(1, (1, None, True, None), every_config=True),
    # class-conditional models: labels in [0, num_classes) reach G and D (gan_jax/models/conditioning.py);
    # 0: unconditional
    "num_classes": Field(0, NON_NEGATIVE, every_config=True),
}


def register(name: str, fields: dict[str, Field] | None = None,
             num_classes: bool = False) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator: `@register('my_model', {'width': Field(64, POSITIVE)})` makes `config.model.name =
    'my_model'` build it; the builder reads `settings(cfg)['width']`. A field that other models also
    declare must accept the same values (config.ranges() checks a field by its path). `num_classes`:
    the builder reads model.num_classes (class-conditional networks, which take labels (N,) int32 in
    [0, num_classes) as `G(z, labels, train)` and `D(x, labels, train)`, and with 0 are the unconditional
    networks; or a classifier's classes); `build` refuses num_classes > 0 for the other models."""

    def wrap(builder: ModelBuilder) -> ModelBuilder:
        declared = fields or {}
        for field, spec in declared.items():
            for other, their in [(n, f[field]) for n, f in MODEL_FIELDS.items() if field in f]:
                if (their.range, their.choices) != (spec.range, spec.choices):
                    raise ValueError(f"model {name!r}: model.{field} accepts other values than in {other!r}")
            if field in SHARED_FIELDS:
                raise ValueError(f"model {name!r}: model.{field} is a shared field (SHARED_FIELDS)")
        MODELS[name] = builder
        MODEL_FIELDS[name] = declared
        if num_classes:
            CLASS_MODELS.add(name)
        return builder

    return wrap


def settings(model_config: ml_collections.ConfigDict | dict, name: str | None = None) -> dict[str, Any]:
    """{field: value} of every field model `name` (default: model_config's) reads, SHARED_FIELDS
    included: the config's value, or the declared default where the config has none or None (base_config's
    placeholder, an older config, a saved classifier's model config). A name outside a field's choices is
    a ConfigError."""
    declared = {**SHARED_FIELDS, **MODEL_FIELDS[name or model_config["name"]]}
    values = {field: spec.default if model_config.get(field) is None else model_config.get(field)
              for field, spec in declared.items()}
    for field, spec in declared.items():
        if spec.choices is not None and values[field] not in spec.choices:
            raise ConfigError(f"model.{field}={values[field]!r} is not accepted; accepted: {', '.join(spec.choices)}")
    return values


def field_specs() -> dict[str, Field]:
    """Every model field ('generator_width': its Field): SHARED_FIELDS, then those of the registered models."""
    return {**SHARED_FIELDS, **{k: f for fields in MODEL_FIELDS.values() for k, f in fields.items()}}


def build(model_config: ml_collections.ConfigDict, example_shape: tuple[int, ...]) -> dict[str, nn.Module]:
    """Builds the networks named by `model_config.name` for examples of `example_shape` (H, W, C) or (D,);
    with model.pack = m > 1 the discriminator sees m samples at a time (PacGAN, `Packed`; unconditional
    models only)."""
    if model_config.name not in MODELS:
        raise ConfigError(f"model.name={model_config.name!r} is unknown; accepted: {', '.join(sorted(MODELS))}")
    s = settings(model_config)
    if s["num_classes"] and model_config.name not in CLASS_MODELS:
        raise ConfigError(f"model.num_classes={s['num_classes']!r} is not accepted by model.name="
                          f"{model_config.name!r}, which takes no labels; accepted: 0, or a model that reads "
                          f"it: {', '.join(sorted(CLASS_MODELS))}")
    pack = s["pack"]
    if pack > 1 and s["num_classes"]:
        raise ConfigError(f"model.pack={pack} with model.num_classes={s['num_classes']}: a packed D judges a group of "
                          "samples, each of its own class; accepted: model.pack=1 for a class-conditional model")
    nets = MODELS[model_config.name](model_config, tuple(example_shape))
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
    def __call__(self, x, labels=None, train: bool = True):
        if labels is not None:  # build() refuses packing for conditional models
            raise ValueError("Packed: a group of samples has no one label")
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
from gan_jax.models import biggan, classifier, dcgan, mlp_gan, r3gan, sngan, vae, vaegan  # noqa: E402,F401
