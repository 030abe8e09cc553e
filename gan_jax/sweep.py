"""Sweeps declared in experiment files, as data: `get_sweep(arg=None)` returns a list of variants,
each a dict of config overrides ({'model.pack': 2, 'seed': 3}), built with `product` and `zip`:

    def get_sweep(arg=None):
        return sweep.product(sweep.axis("model.pack", [1, 2], names=["GAN", "PacGAN2"]), sweep.seeds(10))

A variant's run folder is named by its overrides ('PacGAN2,seed=3'); its *setting* is that name
without the seed ('PacGAN2'): results average over the runs of a setting. The key NAME ('name' in a
variant) names a setting in place of its overrides."""

import builtins
import importlib.util
import itertools
import json
import os
import pathlib

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


# --- loading ---------------------------------------------------------------------------------
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


# --- running ---------------------------------------------------------------------------------
def run_status(workdir: str, cfg: ml_collections.ConfigDict) -> str:
    """'new', 'partial', 'finished' (a checkpoint at train.steps) or 'diverged' (its last event)."""
    ckpt_dir = os.path.join(workdir, "checkpoints")
    steps = [int(d) for d in os.listdir(ckpt_dir) if d.isdigit()] if os.path.isdir(ckpt_dir) else []
    if steps and max(steps) >= cfg.train.steps:
        return "finished"
    from gan_jax.writers import read_metrics

    events = [r["event"] for r in read_metrics(workdir) if r.get("event") in ("diverged", "checkpoint")]
    if events and events[-1] == "diverged":
        return "diverged"
    return "partial" if steps or os.path.exists(os.path.join(workdir, "config.json")) else "new"


def run(spec: str, base: ml_collections.ConfigDict, sweep_dir: str, index: int | None = None) -> dict[str, str]:
    """Runs the sweep of experiment `spec` over `base` (its config with the command line's overrides)
    in sweep_dir/<run name>/: every variant, or variant `index` alone. Finished and diverged runs are
    skipped, partial ones resume. Runs that may share a compiled step train as one vmapped program
    (sweep.vectorize: None = where possible, True, False). Returns {run name: outcome}; writes
    results.md/.csv at the end of a whole sweep."""
    import jax

    from gan_jax import config as config_lib
    from gan_jax import training, vectorized

    module, arg = load_experiment_file(spec)
    if not hasattr(module, "get_sweep"):
        raise UserError(f"--sweep: {spec.partition(':')[0]} defines no get_sweep(arg=None); accepted: an "
                        "experiment file with one (see gan_jax/sweep.py)")
    variants = module.get_sweep(arg)
    check_unique(variants)
    if index is not None and not 0 <= index < len(variants):
        raise UserError(f"--sweep_index={index} is not accepted; accepted: 0..{len(variants) - 1} "
                        f"({len(variants)} variants)")
    cfgs = [apply(base, v) for v in variants]
    for v, c in builtins.zip(variants, cfgs, strict=True):
        try:
            config_lib.validate(c)
            vectorized.program_key(c)  # reads what the step compiles in (penalty names): refused here, per variant
        except UserError as e:
            raise UserError(f"sweep variant {run_name(v)!r}: {e}") from None
    if jax.process_index() == 0:
        published = module.get_published(arg) if hasattr(module, "get_published") else getattr(module, "PUBLISHED", {})
        write_sweep_file(sweep_dir, spec, variants, published, getattr(module, "PUBLISHED_SOURCE", ""))
    names = [run_name(v) for v in variants]
    dirs = [os.path.join(sweep_dir, n) for n in names]
    chosen = [index] if index is not None else range(len(variants))
    outcome, todo, diverged = {}, [], []
    for i in chosen:
        status = run_status(dirs[i], cfgs[i])
        if status in ("finished", "diverged"):
            print(f"sweep: {names[i]} {status}" + (" (delete its folder to retry)" if status == "diverged" else ""),
                  flush=True)
            outcome[names[i]] = status
            diverged += [i] if status == "diverged" else []
        else:
            todo.append(i)
    for group in _groups(list(chosen), todo, cfgs, base.sweep.vectorize):
        if len(group) > 1:
            print(f"sweep: training {len(group)} runs as one vectorized program: {', '.join(names[i] for i in group)}",
                  flush=True)
            results = vectorized.train_runs([cfgs[i] for i in group], [dirs[i] for i in group],
                                            [i in diverged for i in group])
            outcome.update({names[i]: r for i, r in builtins.zip(group, results, strict=True)})
            if "stopped" in results:
                return outcome
            continue
        i = group[0]
        print(f"sweep: training {names[i]} ({todo.index(i) + 1} of {len(todo)} to train)", flush=True)
        try:
            training.train(cfgs[i], dirs[i])
            outcome[names[i]] = "finished" if run_status(dirs[i], cfgs[i]) == "finished" else "stopped"
        except training.TrainingDiverged:
            outcome[names[i]] = "diverged"  # said in the run's log; the sweep goes on
        if outcome[names[i]] == "stopped":
            return outcome
    if index is None and jax.process_index() == 0:
        from gan_jax.results import write_results

        for path in write_results(sweep_dir):
            print(f"wrote {path}", flush=True)
    return outcome


def _groups(chosen: list[int], todo: list[int], cfgs: list, vectorize: bool | None) -> list[list[int]]:
    """The runs to train, alone or in groups that share one program (said on stdout). A group keeps
    its ended members (inactive in the program): a resumed sweep runs the program it started with,
    so that its runs end bitwise as without the interruption."""
    from gan_jax import vectorized

    if vectorize is False or len(chosen) < 2:
        return [[i] for i in todo]
    by_key: dict[str, list[int]] = {}
    for i in chosen:
        by_key.setdefault(vectorized.group_key(cfgs[i]), []).append(i)
    groups = list(by_key.values())
    reason = vectorized.why_not_vectorizable([cfgs[g[0]] for g in groups[:1]])
    if reason is not None:
        print(f"sweep: training the runs one after another: {reason}", flush=True)
        return [[i] for i in todo]
    if len(groups) > 1:
        print(f"sweep: {len(groups)} groups of runs that can share a program "
              f"({vectorized.why_not_vectorizable([cfgs[g[0]] for g in groups[:2]])})", flush=True)
    return [g for g in groups if any(i in todo for i in g)]
