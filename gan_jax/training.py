"""The training loop of one run: checks everything and compiles the pure step before the first write,
holds the workdir's lock, feeds the step the deterministic global batches and leaves what follows each
call (logging, checkpoints, sample grids, evaluations, non-finite stop or rollback: run_loop.Run, the
same for runs trained together by vectorized.py) to the run; resumes from the newest intact checkpoint
and stops cleanly on SIGTERM/SIGINT/SIGHUP from start-up on."""

import functools

import jax
import ml_collections

from gan_jax import disk, parallel, signals
from gan_jax.evaluate import evaluators
from gan_jax.experiment import Experiment
from gan_jax.run_loop import DIVERGED, ROLLBACK, Run, Workdir
from gan_jax.step import batch_shardings, compile_and_check_memory, compile_step, global_batch
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
            state, metrics = step_fns[n](state, global_batch(exp, run.batch(n), shardings_of_batch))
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


def _phase(stop: signals.StopRequest, what: str) -> None:
    """Names the start-up phase in signal messages and on stdout (start-up takes seconds to minutes)."""
    stop.phase = what
    if jax.process_index() == 0:
        print(f"start-up: {what}", flush=True)
