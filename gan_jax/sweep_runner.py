"""`launch.py --sweep`: trains the runs of an experiment's sweep (gan_jax/sweep.py) in
<sweep folder>/<run name>/, alone or in groups that share one vectorized program (gan_jax/vectorized.py),
skipping finished and diverged runs and resuming partial ones, then writes the sweep's results
(gan_jax/results.py)."""

import os

import jax
import ml_collections

from gan_jax import config as config_lib
from gan_jax import results, sweep, training, vectorized
from gan_jax.errors import UserError
from gan_jax.experiment_files import load_experiment_file
from gan_jax.writers import read_metrics


def run_status(workdir: str, cfg: ml_collections.ConfigDict) -> str:
    """'new', 'partial', 'finished' (a checkpoint at train.steps) or 'diverged' (its last event)."""
    ckpt_dir = os.path.join(workdir, "checkpoints")
    steps = [int(d) for d in os.listdir(ckpt_dir) if d.isdigit()] if os.path.isdir(ckpt_dir) else []
    if steps and max(steps) >= cfg.train.steps:
        return "finished"
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
    module, arg = load_experiment_file(spec)
    if not hasattr(module, "get_sweep"):
        raise UserError(f"--sweep: {spec.partition(':')[0]} defines no get_sweep(arg=None); accepted: an "
                        "experiment file with one (see gan_jax/sweep.py)")
    variants = module.get_sweep(arg)
    sweep.check_unique(variants)
    if index is not None and not 0 <= index < len(variants):
        raise UserError(f"--sweep_index={index} is not accepted; accepted: 0..{len(variants) - 1} "
                        f"({len(variants)} variants)")
    cfgs = [sweep.apply(base, v) for v in variants]
    for v, c in zip(variants, cfgs, strict=True):
        try:
            config_lib.validate(c)
            vectorized.program_key(c)  # reads what the step compiles in (penalty names): refused here, per variant
        except UserError as e:
            raise UserError(f"sweep variant {sweep.run_name(v)!r}: {e}") from None
    if jax.process_index() == 0:
        published = module.get_published(arg) if hasattr(module, "get_published") else getattr(module, "PUBLISHED", {})
        sweep.write_sweep_file(sweep_dir, spec, variants, published, getattr(module, "PUBLISHED_SOURCE", ""))
    names = [sweep.run_name(v) for v in variants]
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
            ended = vectorized.train_runs([cfgs[i] for i in group], [dirs[i] for i in group],
                                            [i in diverged for i in group])
            outcome.update({names[i]: r for i, r in zip(group, ended, strict=True)})
            if "stopped" in ended:
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
        for path in results.write_results(sweep_dir):
            print(f"wrote {path}", flush=True)
    return outcome


def _groups(chosen: list[int], todo: list[int], cfgs: list, vectorize: bool | None) -> list[list[int]]:
    """The runs to train, alone or in groups that share one program (said on stdout). A group keeps
    its ended members (inactive in the program): a resumed sweep runs the program it started with,
    so that its runs end bitwise as without the interruption."""
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
