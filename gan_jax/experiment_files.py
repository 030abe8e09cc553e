"""Experiment files (experiments/*.py): `load_experiment_file('PATH[:ARG]')` imports one as a module;
its VARIANTS name the bare words its ARG accepts."""

import importlib.util
import pathlib

from gan_jax.errors import UserError


def load_experiment_file(spec: str):
    """(module, arg) of 'PATH[:ARG]' (or a repository experiment's NAME[:ARG]). ARG's bare words must
    be variants the file declares in VARIANTS; its name=value words go to get_config (parse_arg)."""
    path, _, arg = spec.partition(":")
    file = pathlib.Path(path)
    if not file.suffix:  # 'quickstart' -> the repository's experiments/quickstart.py
        file = pathlib.Path(__file__).resolve().parents[1] / "experiments" / f"{path}.py"
    if not file.is_file():
        raise UserError(f"config {spec!r}: no file {file}; accepted: PATH[:ARG] of an experiment file")
    module_spec = importlib.util.spec_from_file_location(f"gan_jax_experiment_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    variants = getattr(module, "VARIANTS", ())
    unknown = unknown_variants(arg, variants)
    if unknown:
        raise UserError(f"config {spec!r}: unknown variant {unknown[0]!r}; accepted: {', '.join(variants) or 'none'}")
    return module, arg or None


def unknown_variants(arg: str, variants) -> list[str]:
    """The bare words of an experiment argument ('smoke,budget=0.1') that `variants` does not declare."""
    return [w for w in (arg or "").split(",") if w and "=" not in w and w not in variants]
