"""The training loop of one run: checks everything and compiles the pure step before the first write,
holds the workdir's lock, feeds the step the deterministic global batches and leaves what follows each
call (logging, checkpoints, sample grids, evaluations, non-finite stop or rollback: run_loop.Run, the
same for runs trained together by vectorized.py) to the run; resumes from the newest intact checkpoint
and stops cleanly on SIGTERM/SIGINT/SIGHUP from start-up on."""

import functools

import jax
import ml_collections
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from gan_jax import disk, memory, parallel, signals
from gan_jax.evaluate import evaluators
from gan_jax.experiment import Experiment
from gan_jax.run_loop import DIVERGED, ROLLBACK, Run, Workdir, train_arrays
from gan_jax.writers import check_wandb


class TrainingDiverged(RuntimeError):
    """A loss or a parameter became NaN or inf."""


def train(cfg: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains to `cfg.train.steps` in `workdir`, resuming from its newest intact checkpoint.
    Returns the last logged metrics. Raises UserError on bad input before anything is written,
    StoppedBeforeTraining on SIGTERM/SIGINT during start-up, and TrainingDiverged on non-finite
    values (after `train.max_rollbacks` rollbacks with train.on_nonfinite='rollback')."""
    is_writer = jax.process_index() == 0
    with signals.stop_request() as stop:
        _phase(stop, "loading data")
        exp = Experiment(cfg)
        check_wandb(cfg)
        eval_names = evaluators.selected(exp)
        stop.check()
        with Workdir(workdir, cfg, is_writer) as run_folder:
            _phase(stop, "compiling the step")
            shardings = exp.state_shardings()
            step_fn = compile_and_check_memory(exp, shardings)
            stop.check()
            _phase(stop, "looking for checkpoints")
            run = Run(exp, workdir, stop, row=0 if exp.pmap else None)  # pmap: the local device's metrics
            try:
                with disk.writing(f"writing in {workdir}"):  # a write not named more closely below
                    state = run.restore(run_folder.had_run)
                    stop.check()
                    if run.step >= cfg.train.steps:
                        print(f"the newest checkpoint is at step {run.step}, at or past train.steps="
                              f"{cfg.train.steps}: nothing to train (raise --config.train.steps to train longer)",
                              flush=True)
                        return {}
                    stop.phase = "training"
                    stop.newest_checkpoint = run.ckpt.latest_step()
                    return _train_loop(exp, run, state, step_fn, shardings, stop, eval_names)
            except disk.DiskFull as e:
                raise disk.StoppedOnFullDisk(e, run.newest_kept()) from e
            finally:
                run.close()


def _train_loop(exp: Experiment, run: Run, state, step_fn, shardings, stop: signals.StopRequest,
                eval_names: list[str]) -> dict:
    """Calls the step until train.steps (or a signal); returns the last logged metrics."""
    cfg, k = exp.cfg, exp.cfg.train.steps_per_call
    step_fns = {k: step_fn}  # the last call of a run whose steps are not a multiple of k runs fewer
    shardings_of_batch = batch_shardings(exp)
    if exp.pmap:
        state = parallel.pmap_replicate(state)
    unreplicated = functools.partial(parallel.pmap_unreplicate, mesh=exp.mesh) if exp.pmap else (lambda s: s)
    run.start(eval_names)
    completed = False
    try:
        while run.step < cfg.train.steps:
            n = min(k, cfg.train.steps - run.step)
            if n not in step_fns:
                step_fns[n] = compile_step(exp, shardings, length=n)
            state, metrics = step_fns[n](state, _global_batch(exp, run.batch(n), shardings_of_batch))
            stopping = stop.signal  # read once: a signal arriving later in this pass waits for the next
            outcome = run.after_call(metrics, n, stopping, functools.partial(unreplicated, state))
            if outcome == DIVERGED:
                run.writer.message(run.divergence)
                raise TrainingDiverged(run.divergence)
            if outcome == ROLLBACK:
                restored = run.roll_back()
                state = parallel.pmap_replicate(restored) if exp.pmap else restored
                continue
            if stopping:
                run.say_stopped(stopping)
                break
        completed = True
    finally:
        run.finish(failing=not completed)
    return run.last_metrics


def _global_batch(exp: Experiment, local, shardings_of_batch):
    """This process's batches of a call -> the step's input: split over the local devices (pmap) or
    one global array over the mesh."""
    if local is None:
        return None
    if exp.pmap:
        return jax.tree.map(lambda a: parallel.pmap_split(a, batch_axis=2), local)
    return jax.tree.map(lambda a, sharding: parallel.global_batch_array(a, sharding, batch_axis=2), local,
                        shardings_of_batch)


def _phase(stop: signals.StopRequest, what: str) -> None:
    """Names the start-up phase in signal messages and on stdout (start-up takes seconds to minutes)."""
    stop.phase = what
    if jax.process_index() == 0:
        print(f"start-up: {what}", flush=True)


def _multi_step(exp: Experiment, length: int | None):
    def multi_step(state, batches, hp):  # named: tests count "Compiling jit(multi_step)" in the log
        return exp.builder.multi_step(state, batches, hp, length)

    return multi_step


def compile_step(exp: Experiment, state_shardings, length: int | None = None):
    """The jitted (or pmapped) multi-step of `length` updates (default train.steps_per_call):
    (state, batches) -> (state, stacked metrics); state donated. The objective's hyperparameters go in
    as arrays (one compilation whatever their values). Under pmap the metrics come back as the first
    local device's copy, (1, K), so that every process can read them (the full (devices, K) output
    spans other processes' devices)."""
    multi_step = _multi_step(exp, length)
    if exp.pmap:
        hp = exp.builder.hyperparameters()
        pmapped = jax.pmap(multi_step, axis_name=parallel.PMAP_AXIS, in_axes=(0, 0, None), donate_argnums=0)

        def step(state, batches):
            state, metrics = pmapped(state, batches, hp)
            return state, parallel.pmap_local(metrics)

        return step
    jitted, hp = _jit_step(exp, state_shardings, multi_step)
    return lambda state, batches: jitted(state, batches, hp)


def _jit_step(exp: Experiment, state_shardings, multi_step):
    """The jitted (state, batches, hp) step and the hyperparameters, replicated over the mesh."""
    in_shardings = (state_shardings, batch_shardings(exp), parallel.replicated(exp.mesh))
    jitted = jax.jit(multi_step, in_shardings=in_shardings,
                     out_shardings=(state_shardings, NamedSharding(exp.mesh, P())), donate_argnums=0)
    return jitted, parallel.host_replicated(exp.builder.hyperparameters(), exp.mesh)


def batch_shardings(exp: Experiment):
    """The shardings of a call's batch (None for synthetic data): images (K, n_critic, B, *example),
    and labels (K, n_critic, B) for objectives that train on them, split over the batch axis."""
    if exp.images is None:
        return None
    images = parallel.batch_sharding(exp.mesh, 3 + len(exp.example_shape), batch_axis=2)
    return images if exp.labels is None else (images, parallel.batch_sharding(exp.mesh, 3, batch_axis=2))


def compile_and_check_memory(exp: Experiment, state_shardings):
    """The step of train.steps_per_call updates, compiled ahead of time and refused with
    InsufficientMemory if it does not fit on a device (pmap: compiled at the first call, so only
    its state is checked)."""
    if exp.pmap:
        memory.check_fits(None, jax.eval_shape(exp.builder.init_state, exp.seed))
        return compile_step(exp, state_shardings)
    cfg = exp.cfg
    batch = None
    if exp.images is not None:
        leading = (cfg.train.steps_per_call, cfg.train.n_critic, cfg.data.batch_size)
        arrays = train_arrays(exp)
        batch = jax.tree.map(lambda a, sharding: jax.ShapeDtypeStruct((*leading, *a.shape[1:]), a.dtype,
                                                                      sharding=sharding),
                             arrays, batch_shardings(exp))
    abstract = exp.abstract_state()
    jitted, hp = _jit_step(exp, state_shardings, _multi_step(exp, None))
    compiled = jitted.lower(abstract, batch, hp).compile()
    memory.check_fits(compiled, abstract)
    return lambda state, batches: compiled(state, batches, hp)
