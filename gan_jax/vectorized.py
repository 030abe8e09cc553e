"""Several runs trained as one program: the runs of a sweep that differ only in their seeds and in
hyperparameters the step reads as arrays (learning rates, loss and penalty weights, beta, EMA decay)
stack their train states on a leading run axis and share one `jax.vmap`-ed, jit-compiled step.

Everything else stays per run, in each run's own folder, exactly as a run trained alone writes it:
its data order (its own seed), metrics.jsonl, sample grids, evaluations, checkpoints (the run's
slice of the stacked state: the folder resumes, samples and evaluates alone too), resumption from
its own newest checkpoint, and its non-finite handling (a run that diverges stops or rolls back
alone; the others go on). Runs may be at different steps (a rollback, a SIGKILL between two runs'
saves): each step call advances the unfinished runs and leaves the others' slices unchanged."""

import contextlib
import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from gan_jax import disk, experiment, memory, objectives, parallel, signals
from gan_jax.evaluate import evaluators
from gan_jax.experiment import Experiment
from gan_jax.objectives.base import schedule_horizon
from gan_jax.run_loop import DIVERGED, ROLLBACK, Run, Workdir
from gan_jax.step import train_arrays
from gan_jax.writers import check_wandb

# Fields that only steer a run's own loop, data order or keys: runs may differ in them. The fields
# whose values reach the step as arrays are each objective's to declare (objectives/base.py
# Steps.HYPERPARAMETERS, read through step_hyperparameter_fields).
PER_RUN_FIELDS = ("seed", "data.seed", "train.steps", "train.log_every", "train.sample_every",
                  "train.checkpoint_every", "train.on_nonfinite", "train.max_rollbacks", "checkpoint.max_to_keep",
                  "data.dir", "data.tfds_dir")
PER_RUN_SECTIONS = ("eval.", "log.", "sweep.")


def step_hyperparameter_fields(cfg: ml_collections.ConfigDict) -> dict:
    """Config field -> None, or the function of its value giving the part compiled into the step, for
    the fields whose values `cfg.objective`'s step reads as arrays."""
    return objectives.get(cfg.objective).steps.hyperparameter_fields()


def program_key(cfg: ml_collections.ConfigDict) -> str:
    """What must agree between runs that share a compiled program: the config without the per-run
    fields and the step's hyperparameters (of those, only the part compiled in: e.g. the penalties'
    names and intervals, not their weights)."""
    flat = experiment.flatten(json.loads(cfg.to_json()))
    flat = {k: v for k, v in flat.items() if k not in PER_RUN_FIELDS and not k.startswith(PER_RUN_SECTIONS)}
    # train.steps is per run, except where the learning-rate schedule decays over it.
    flat["train.steps (the learning-rate schedule decays over it)"] = schedule_horizon(cfg)
    for field, compiled in step_hyperparameter_fields(cfg).items():
        if compiled is None:
            flat.pop(field, None)
        else:
            flat[field] = compiled(flat[field])
    return json.dumps(flat, sort_keys=True, default=str)


_signatures: dict[str, str] = {}  # config JSON -> its state signature


def state_signature(cfg: ml_collections.ConfigDict) -> str:
    """The train state's tree structure, shapes and dtypes, which must agree between stacked runs; a
    step hyperparameter can change it (train.ema_decay=0 keeps no EMA copy of the generator)."""
    text = cfg.to_json()
    if text not in _signatures:  # a sweep asks for each run's more than once
        abstract = jax.eval_shape(Experiment(cfg, load_train_data=False).builder.init_state, cfg.seed)
        leaves = [(leaf.shape, str(leaf.dtype)) for leaf in jax.tree.leaves(abstract)]
        _signatures[text] = f"{jax.tree.structure(abstract)} {leaves}"
    return _signatures[text]


def why_not_vectorizable(cfgs: list[ml_collections.ConfigDict]) -> str | None:
    """None if `cfgs` can train as one program, else the reason in a few words."""
    first = cfgs[0]
    if first.parallel.mode != "jit" or first.parallel.shard_params:
        return "it needs parallel.mode='jit' without parallel.shard_params"
    keys = [program_key(c) for c in cfgs]
    if len(set(keys)) > 1:
        a, b = json.loads(keys[0]), json.loads(next(k for k in keys if k != keys[0]))
        field = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))[0]
        return f"the runs differ in {field}, which changes the compiled step"
    signatures = [state_signature(c) for c in cfgs]
    if len(set(signatures)) > 1:
        other = cfgs[next(i for i, s in enumerate(signatures) if s != signatures[0])]
        return f"the runs differ in {_structural_field(first, other)}, which changes the structure of the train state"
    return None


def _structural_field(a: ml_collections.ConfigDict, b: ml_collections.ConfigDict) -> str:
    """'train.ema_decay (0.0 vs 0.999)': the first hyperparameter field whose value from `b` changes
    the state signature of `a` (found by trying each, so no field is singled out by name here)."""
    flat_a, flat_b = experiment.flatten(json.loads(a.to_json())), experiment.flatten(json.loads(b.to_json()))
    for field in step_hyperparameter_fields(a):
        if flat_a.get(field) != flat_b.get(field):
            tried = ml_collections.ConfigDict(a.to_dict())
            section, _, name = field.rpartition(".")
            (tried[section] if section else tried)[name] = flat_b[field]
            if state_signature(tried) != state_signature(a):
                return f"{field} ({flat_a[field]} vs {flat_b[field]})"
    return "a field"


def group_key(cfg: ml_collections.ConfigDict) -> str:
    """Runs with equal keys can share one program: the same program key and train-state structure."""
    return program_key(cfg) + "\n" + state_signature(cfg)


def vectorized_step(builder, length: int | None = None):
    """The multi-step of `length` updates over R stacked runs: (states, batches, hps, active) ->
    (states, metrics), every leaf with a leading (R,) axis (batches: (R, K, n_critic, B, ...) or None;
    active: (R,) bool, False leaves a run's state as it was, bitwise)."""

    def vectorized_multi_step(states, batches, hps, active):  # named: tests count its compilations
        def one(state, batch, hp, on):
            new, metrics = builder.multi_step(state, batch, hp, length)
            return jax.tree.map(lambda n, o: jnp.where(on, n, o), new, state), metrics

        return jax.vmap(one)(states, batches, hps, active)

    return vectorized_multi_step


def train_runs(cfgs: list[ml_collections.ConfigDict], workdirs: list[str],
               diverged: list[bool] | None = None) -> list[str]:
    """Trains each config to its train.steps in its workdir as one vmapped program, resuming each
    run from its own newest checkpoint; runs already finished, or `diverged`, stay in the program
    inactive (a resumed group runs the same program as before). Returns each run's outcome:
    'finished', 'diverged' or 'stopped' (SIGTERM/SIGINT: every run saved)."""
    reason = why_not_vectorizable(cfgs)
    if reason is not None:
        raise ValueError(f"these runs cannot train as one program: {reason}")
    is_writer = jax.process_index() == 0
    with signals.stop_request() as stop, contextlib.ExitStack() as stack:
        stop.phase = "loading data"
        exps = [Experiment(c) for c in cfgs]
        for c in cfgs:
            check_wandb(c)
        eval_names = [evaluators.selected(e) for e in exps]
        folders = [stack.enter_context(Workdir(w, c, is_writer)) for w, c in zip(workdirs, cfgs, strict=True)]
        stop.check()
        stop.phase = "compiling the step"
        runs = _Runs(exps, workdirs, stop)
        stack.callback(runs.close)
        runs.compile(cfgs[0].train.steps_per_call)
        stop.check()
        stop.phase = "looking for checkpoints"
        try:
            with disk.writing(f"writing in {os.path.dirname(workdirs[0])}"):  # a write not named more closely
                runs.restore([f.had_run for f in folders])
                stop.check()
                stop.phase = "training"
                return runs.loop(eval_names, diverged or [False] * len(cfgs))
        except disk.DiskFull as e:
            # Once every save under way has ended: each run's folder tells which checkpoint it keeps.
            raise disk.StoppedOnFullDisk(e, {os.path.basename(r.workdir): r.newest_kept() for r in runs.runs}) from e


class _Runs:
    """The stacked state of R runs, the program that steps it, and each run's own side (run_loop.Run:
    its pipeline, writer, checkpoints and step), which sees its slice of the state."""

    def __init__(self, exps: list[Experiment], workdirs: list[str], stop: signals.StopRequest):
        self.exps, self.stop = exps, stop
        self.cfgs = [e.cfg for e in exps]
        self.mesh = exps[0].mesh
        self.runs = [Run(e, w, stop, row=i, alone=False) for i, (e, w) in enumerate(zip(exps, workdirs, strict=True))]
        self.hps = jax.tree.map(lambda *v: np.stack(v), *[e.builder.hyperparameters() for e in exps])
        self.hps = parallel.host_replicated(self.hps, self.mesh)
        self.shardings = exps[0].state_shardings()  # of one run's state: the same for all
        self.fns = {}
        for e in exps[1:] if exps[0].objective.generates else ():  # one compiled sampler: the same networks
            e.share_sampler(exps[0])

    def close(self) -> None:
        for r in self.runs:
            r.close()

    # --- the program -------------------------------------------------------------------------
    def _batch_sharding(self):
        exp = self.exps[0]
        if exp.images is None:
            return None
        images = parallel.batch_sharding(self.mesh, 4 + len(exp.example_shape), batch_axis=3)
        return images if exp.labels is None else (images, parallel.batch_sharding(self.mesh, 4, batch_axis=3))

    def _stacked_abstract(self):
        one = jax.eval_shape(self.exps[0].builder.init_state, self.exps[0].seed)
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct((len(self.exps), *x.shape), x.dtype,
                                                           sharding=parallel.replicated(self.mesh)), one)

    def _jit(self, length: int):
        replicated = parallel.replicated(self.mesh)
        return jax.jit(vectorized_step(self.exps[0].builder, length), donate_argnums=0,
                       in_shardings=(replicated, self._batch_sharding(), replicated, replicated),
                       out_shardings=(replicated, NamedSharding(self.mesh, P())))

    def compile(self, length: int) -> None:
        """The step of `length` updates, ahead of time; refused if R runs' state does not fit."""
        abstract = self._stacked_abstract()
        batch = None
        if self.exps[0].images is not None:
            c = self.cfgs[0]
            lead = (len(self.exps), length, c.train.n_critic, c.data.batch_size)
            batch = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct((*lead, *a.shape[1:]), a.dtype, sharding=s),
                                 train_arrays(self.exps[0]), self._batch_sharding())
        active = jax.ShapeDtypeStruct((len(self.exps),), jnp.bool_, sharding=parallel.replicated(self.mesh))
        compiled = self._jit(length).lower(abstract, batch, self.hps, active).compile()
        memory.check_fits(compiled, abstract)
        self.fns[length] = parallel.one_execution_at_a_time(compiled)

    # --- state -------------------------------------------------------------------------------
    def restore(self, had_run: list[bool]) -> None:
        self.state = self._stack([r.restore(had) for r, had in zip(self.runs, had_run, strict=True)])

    def _stack(self, states):
        return jax.device_put(jax.tree.map(lambda *xs: jnp.stack(xs), *states), parallel.replicated(self.mesh))

    def run_state(self, i: int):
        """Run i's slice of the stacked state, laid out as that run alone places it."""
        return jax.device_put(jax.tree.map(lambda x: x[i], self.state), self.shardings)

    def replace(self, i: int, state) -> None:
        self.state = jax.tree.map(lambda s, r: s.at[i].set(r), self.state, state)

    # --- the loop ----------------------------------------------------------------------------
    def loop(self, eval_names: list[list[str]], diverged: list[bool]) -> list[str]:
        runs = self.runs
        outcome = ["diverged" if d else "finished" if r.step >= r.cfg.train.steps else None
                   for r, d in zip(runs, diverged, strict=True)]
        for r, names in zip(runs, eval_names, strict=True):
            r.start(names)
        k = self.cfgs[0].train.steps_per_call
        completed = False
        try:
            while any(o is None for o in outcome):
                running = [i for i, o in enumerate(outcome) if o is None]
                n = min(k, *(runs[i].cfg.train.steps - runs[i].step for i in running))
                if n not in self.fns:
                    self.compile(n)
                active = np.array([o is None for o in outcome])
                self.state, metrics = self.fns[n](self.state, self._batches(running, n), self.hps,
                                                  parallel.host_replicated(active, self.mesh))
                stopping = self.stop.signal
                for i in running:
                    outcome[i] = self._after_call(i, metrics, n, stopping)
                if stopping:
                    for i, r in enumerate(runs):
                        outcome[i] = outcome[i] or "stopped"
                        r.say_stopped(stopping)
            for r in runs:
                r.ckpt.wait()
            completed = True
        finally:
            for r in runs:
                r.finish(failing=not completed)
        return outcome

    def _after_call(self, i: int, metrics, n: int, stopping: str | None) -> str | None:
        """Run i's side of a call: its outcome if it ended ('finished', 'diverged'), else None."""
        run = self.runs[i]
        outcome = run.after_call(metrics, n, stopping, functools.partial(self.run_state, i))
        if outcome == ROLLBACK:
            self.replace(i, run.roll_back())
            return None
        if outcome == DIVERGED:
            run.writer.message(f"{run.workdir}: {run.divergence}; the other runs go on")
        return outcome

    def _batches(self, running: list[int], n: int):
        if self.exps[0].images is None:
            return None
        local = {i: self.runs[i].batch(n) for i in running}
        filler = jax.tree.map(np.zeros_like, local[running[0]])  # finished runs' slices: computed, discarded
        stacked = jax.tree.map(lambda *xs: np.stack(xs), *[local.get(i, filler) for i in range(len(self.exps))])
        return jax.tree.map(lambda a, s: parallel.global_batch_array(a, s, batch_axis=3), stacked,
                            self._batch_sharding())
