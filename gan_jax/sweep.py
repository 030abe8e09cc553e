"""Sweeps declared in experiment files, as data: `get_sweep(arg=None)` returns a list of variants,
each a dict of config overrides ({'model.pack': 2, 'seed': 3}), built with `product` and `zip`:

    def get_sweep(arg=None):
        return sweep.product(sweep.axis("model.pack", [1, 2], names=["GAN", "PacGAN2"]), sweep.seeds(10))

A variant's run folder is named by its overrides ('PacGAN2,seed=3'); its *setting* is that name
without the seed ('PacGAN2'): results average over the runs of a setting. The key NAME ('name' in a
variant) names a setting in place of its overrides. A sweep folder's SWEEP_FILE records its runs (written
by sweep_runner.py, read by results.py)."""

import builtins
import itertools
import json
import os

import ml_collections

from gan_jax import disk
from gan_jax.errors import UserError

NAME = "name"  # a variant's readable setting name (not a config field)
SEED_FIELDS = ("seed", "data.seed")  # what varies between the runs of one setting
SWEEP_FILE = "sweep.json"  # in the sweep folder: the runs, their settings and overrides, published rows


def axis(field: str, values, names: list[str] | None = None) -> list[dict]:
    """One variant per value of `field`; `names` (one per value) name the settings."""
    values = list(values)
    if names is not None and len(names) != len(values):
        raise ValueError(f"axis {field!r}: {len(names)} names for {len(values)} values")
    names = names or [None] * len(values)
    return [{field: v} if n is None else {NAME: n, field: v} for v, n in builtins.zip(values, names, strict=True)]


def seeds(n: int, field: str = "seed") -> list[dict]:
    """Variants seed=0..n-1."""
    return [{field: s} for s in range(n)]


def product(*sweeps: list[dict]) -> list[dict]:
    """Every combination, the first sweep varying slowest; names of combined variants join with '-'."""
    return [_merge(parts) for parts in itertools.product(*sweeps)]


def zip(*sweeps: list[dict]) -> list[dict]:  # noqa: A001 (the name users know from big_vision and Python)
    """Variants merged position by position; the sweeps must have the same length."""
    lengths = {len(s) for s in sweeps}
    if len(lengths) > 1:
        raise ValueError(f"sweep.zip: sweeps of different lengths {sorted(lengths)}")
    return [_merge(parts) for parts in builtins.zip(*sweeps, strict=True)]


def _merge(parts) -> dict:
    out, names = {}, []
    for part in parts:
        for k, v in part.items():
            if k == NAME:
                names.append(str(v))
            elif k in out and out[k] != v:
                raise ValueError(f"sweep: {k!r} set to both {out[k]!r} and {v!r} in one variant")
            else:
                out[k] = v
    return {NAME: "-".join(names), **out} if names else out


def setting_name(variant: dict) -> str:
    """The variant's name without its seed: 'PacGAN2', or 'loss.name=hinge' where it has no NAME;
    'default' for a variant that sets only the seed."""
    if variant.get(NAME):
        return str(variant[NAME])
    parts = [f"{k}={_text(v)}" for k, v in variant.items() if k not in SEED_FIELDS and k != NAME]
    return ",".join(parts) or "default"


def run_name(variant: dict) -> str:
    """The run folder's name: the setting and the seed fields, e.g. 'PacGAN2,seed=3'. Safe as a path."""
    seeds_part = [f"{k}={_text(variant[k])}" for k in SEED_FIELDS if k in variant]
    setting = setting_name(variant)
    parts = ([] if setting == "default" and seeds_part else [setting]) + seeds_part
    return ",".join(parts).replace("/", "_").replace(" ", "_")


def _text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def apply(cfg: ml_collections.ConfigDict, variant: dict) -> ml_collections.ConfigDict:
    """A copy of `cfg` with the variant's overrides; a field the config does not have is one line."""
    out = ml_collections.ConfigDict(cfg.to_dict())
    for field, value in variant.items():
        if field == NAME:
            continue
        node, *path = field.split(".")[::-1]
        parent = out
        for part in reversed(path):
            if part not in parent or not isinstance(parent[part], ml_collections.ConfigDict):
                raise UserError(f"sweep variant {run_name(variant)!r}: the config has no field {field!r}")
            parent = parent[part]
        if node not in parent:
            raise UserError(f"sweep variant {run_name(variant)!r}: the config has no field {field!r}")
        try:
            parent[node] = value
        except TypeError as e:
            raise UserError(f"sweep variant {run_name(variant)!r}: {field}={value!r}: {e}") from None
    return out


def check_unique(variants: list[dict]) -> None:
    names = [run_name(v) for v in variants]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserError(f"get_sweep() returns several variants named {duplicates[0]!r}; each run needs its own "
                        "folder: add a seed or a 'name'")


def write_sweep_file(sweep_dir: str, spec: str, variants: list[dict], published: dict | None = None,
                     published_source: str = "") -> None:
    """W/sweep.json: {config, runs: [{name, setting, overrides}], published, published_source}; atomic."""
    record = {"config": spec, "runs": [{"name": run_name(v), "setting": setting_name(v),
                                        "overrides": {k: x for k, x in v.items() if k != NAME}} for v in variants],
              "published": published or {}, "published_source": published_source}
    os.makedirs(sweep_dir, exist_ok=True)
    path = os.path.join(sweep_dir, SWEEP_FILE)
    disk.write_text(path, json.dumps(record, indent=2, default=str))


def read_sweep_file(sweep_dir: str) -> dict:
    path = os.path.join(sweep_dir, SWEEP_FILE)
    if not os.path.exists(path):
        raise UserError(f"--workdir={sweep_dir!r} holds no sweep (no {SWEEP_FILE}); run launch.py --sweep there first")
    with open(path) as f:
        return json.load(f)
