"""Objective registry. An objective is one module with one step-builder class (objectives/base.py
`Steps`, which writes the pure `train_step` once): its state's initialization, its update, its
hyperparameters and its sampler, registered by name with the networks it trains, so that
`config.objective = 'name'` selects it and nothing else changes:

    @register("my_objective", nets=("generator", "discriminator"))
    class MySteps(GanSteps):
        def generator_objective(self, fake, p_d, d_stats, sn_vectors, real, key): ...  # -> (loss, metrics)
"""

import dataclasses
from collections.abc import Callable

from gan_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Objective:
    name: str
    steps: type  # a base.Steps subclass: (cfg, nets, example_shape, mixture, binarize, axis_name)
    nets: tuple[str, ...]  # the networks it trains (what the model must build)
    needs_labels: bool = False  # batches are (images, labels)
    generates: bool = True  # has a sampler (sample grids, --mode=sample)
    needs_images: bool = False  # trains on image data only (not on the 2D mixtures)


OBJECTIVES: dict[str, Objective] = {}


def register(name: str, nets: tuple[str, ...], **flags) -> Callable[[type], type]:
    """Class decorator: `@register('name', nets=(...))` makes `config.objective = 'name'` train it."""
    def wrap(cls: type) -> type:
        OBJECTIVES[name] = Objective(name, cls, tuple(nets), **flags)
        return cls

    return wrap


def get(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ConfigError(f"objective={name!r} is unknown; accepted: {', '.join(sorted(OBJECTIVES))}")
    return OBJECTIVES[name]


def build_steps(cfg, nets: dict, example_shape: tuple[int, ...], mixture: str | None = None,
                binarize: bool = False, axis_name: str | None = None):
    """The step builder of `cfg.objective` for these networks and data (Experiment builds it from a config)."""
    return get(cfg.objective).steps(cfg, nets, example_shape, mixture, binarize, axis_name)


# Importing the objective files registers them.
from gan_jax.objectives import classifier, gan, vae, vaegan  # noqa: E402,F401
