"""The training loop: checks everything and compiles the pure step before the first write, holds
the workdir's lock, feeds the step the deterministic global batches, logs every `train.log_every`
steps (the only host synchronization), writes sample grids, evaluations and checkpoints, resumes
from the newest intact checkpoint, stops cleanly on SIGTERM/SIGINT from start-up on, and stops or
rolls back on non-finite values."""

import contextlib
import json
import os
import time

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from gan_jax import disk, keys, memory, parallel, report, signals
from gan_jax.data.pipeline import InputPipeline
from gan_jax.data.synthetic import sample_mixture
from gan_jax.errors import UserError
from gan_jax.evaluate import evaluators
from gan_jax.evaluate import samples as sample_io
from gan_jax.experiment import Experiment, check_workdir_config, make_workdir, write_workdir_config
from gan_jax.lock import LOCK_NAME, WorkdirLock
from gan_jax.writers import MetricWriter, check_wandb


class TrainingDiverged(RuntimeError):
    """A loss or a parameter became NaN or inf."""


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


def train_arrays(exp: Experiment):
    """What the input pipeline serves: the images, or (images, labels)."""
    return exp.images if exp.labels is None else (exp.images, exp.labels)


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


class _Workdir(contextlib.ExitStack):
    """Creates the workdir, holds its lock and checks that a run there is this config's (process 0;
    every process learns if that failed, so none waits for the others in vain). A workdir this run
    created is removed again if the run ends before writing anything into it."""

    def __init__(self, workdir: str, cfg: ml_collections.ConfigDict, is_writer: bool):
        super().__init__()
        self.workdir, self.cfg, self.is_writer = workdir, cfg, is_writer
        self.created = is_writer and not os.path.exists(workdir)
        self.locked = False
        self.had_run = False  # config.json was there already

    def __exit__(self, *exc):
        suppress = super().__exit__(*exc)
        # Only the lock's holder may remove it: another run may be starting in this workdir.
        if self.created and self.locked and set(os.listdir(self.workdir)) <= {LOCK_NAME}:
            with contextlib.suppress(OSError):
                os.remove(os.path.join(self.workdir, LOCK_NAME))
                os.rmdir(self.workdir)
        return suppress

    def __enter__(self):
        super().__enter__()
        error = None
        if self.is_writer:
            try:
                make_workdir(self.workdir)
                self.enter_context(WorkdirLock(self.workdir))
                self.locked = True
                self.had_run = check_workdir_config(self.workdir, self.cfg)
            except UserError as e:
                error = e
        if jax.process_count() > 1:
            failed = multihost_utils.broadcast_one_to_all(np.int32(error is not None))
            if failed and error is None:
                error = UserError(f"--workdir={self.workdir!r}: process 0 refused it (see its message)")
        if error is not None:
            self.__exit__(None, None, None)
            raise error
        return self


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
        with _Workdir(workdir, cfg, is_writer) as run_folder:
            _phase(stop, "compiling the step")
            shardings = exp.state_shardings()
            step_fn = compile_and_check_memory(exp, shardings)
            stop.check()
            _phase(stop, "looking for checkpoints")
            ckpt = exp.checkpointer(workdir)
            try:
                with disk.writing(f"writing in {workdir}"):  # a write not named more closely below
                    start, state = _restore_or_init(exp, ckpt, workdir, run_folder.had_run)
                    stop.check()
                    if start >= cfg.train.steps:
                        print(f"the newest checkpoint is at step {start}, at or past train.steps={cfg.train.steps}: "
                              "nothing to train (raise --config.train.steps to train longer)", flush=True)
                        return {}
                    if is_writer:
                        write_workdir_config(workdir, cfg)
                    if exp.objective.generates:
                        os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
                    stop.phase = "training"
                    stop.newest_checkpoint = ckpt.latest_step()
                    return _train_loop(exp, ckpt, workdir, start, state, step_fn, shardings, stop, eval_names)
            except disk.DiskFull as e:
                raise _stopped_on_full_disk(e, ckpt) from e
            finally:
                ckpt.close()


def _stopped_on_full_disk(error: disk.DiskFull, ckpt) -> disk.StoppedOnFullDisk:
    """The error for a run stopped by a full disk, once a save still under way has ended (it may have
    completed, or failed for the same reason: the disk tells which checkpoint is kept)."""
    with contextlib.suppress(UserError):
        ckpt.wait()
    return disk.StoppedOnFullDisk(error, ckpt.newest_on_disk())


def _phase(stop: signals.StopRequest, what: str) -> None:
    """Names the start-up phase in signal messages and on stdout (start-up takes seconds to minutes)."""
    stop.phase = what
    if jax.process_index() == 0:
        print(f"start-up: {what}", flush=True)


def _restore_or_init(exp: Experiment, ckpt, workdir: str, had_run: bool):
    """(start step, state on the mesh): the newest intact checkpoint's, or step 0's."""
    report = lambda text: print(text, flush=True) if jax.process_index() == 0 else None
    partial = ckpt.cleanup_partial()
    if partial:
        report(f"removed {len(partial)} unfinished checkpoint save(s): {', '.join(partial)}")
    start, state = ckpt.restore_latest_good(exp.abstract_state(), report=report, quarantine=True)
    if state is not None:
        report(f"resumed from checkpoint at step {start}")
        return start, state
    if had_run:
        report(f"{workdir} holds a run (config.json) but no intact checkpoint in {ckpt.directory}: "
               "training from step 0")
    return 0, exp.init_state()


def _train_loop(exp, ckpt, workdir, start, state, step_fn, shardings, stop, eval_names) -> dict:
    cfg = exp.cfg
    is_writer = jax.process_index() == 0
    writer = MetricWriter(workdir, cfg.train.steps, enabled=is_writer, cfg=cfg)
    config_json = json.loads(cfg.to_json())
    pipeline = None
    if exp.images is not None:
        data_seed = cfg.seed if cfg.data.seed is None else cfg.data.seed
        pipeline = InputPipeline(train_arrays(exp), cfg.data.batch_size, data_seed, cfg.train.n_critic,
                                 cfg.train.steps_per_call, prefetch=cfg.data.prefetch)
    shardings_of_batch = batch_shardings(exp)
    k = cfg.train.steps_per_call
    step_fns = {k: step_fn}  # the last call of a run whose steps are not a multiple of k runs fewer

    def run_call(state, step):
        n = min(k, cfg.train.steps - step)
        if n not in step_fns:
            step_fns[n] = compile_step(exp, shardings, length=n)
        if pipeline is None:
            return step_fns[n](state, None), n
        local = jax.tree.map(lambda a: a[:n], pipeline.get(step))
        if exp.pmap:
            return step_fns[n](state, jax.tree.map(lambda a: parallel.pmap_split(a, batch_axis=2), local)), n
        batch = jax.tree.map(lambda a, sharding: parallel.global_batch_array(a, sharding, batch_axis=2), local,
                             shardings_of_batch)
        return step_fns[n](state, batch), n

    if exp.pmap:
        state = parallel.pmap_replicate(state)
    unreplicated = (lambda s: parallel.pmap_unreplicate(s, exp.mesh)) if exp.pmap else (lambda s: s)

    saving = None  # the step whose save may still be running in the background

    def save(step, state):
        nonlocal saving
        # Wait for the step itself first, so that the figure is the time the save holds the loop up.
        jax.block_until_ready(state)
        t = time.perf_counter()
        stop.phase = f"saving checkpoint {step}"
        ckpt.save(step, unreplicated(state), config=config_json)  # waits for the previous save first
        stop.newest_checkpoint = saving if saving is not None else stop.newest_checkpoint
        saving = step
        writer.write(step, {"event": "checkpoint", "checkpoint_blocking_s": time.perf_counter() - t})

    step, pending, last_log_time, last_log_step = start, [], time.time(), start
    rollbacks, last_metrics, completed = 0, {}, False
    try:
        while step < cfg.train.steps:
            (state, metrics), n = run_call(state, step)
            pending.append(metrics)
            step += n
            stopping = stop.signal  # read once: a signal arriving later in this pass waits for the next
            log_now = step % cfg.train.log_every < n or step >= cfg.train.steps
            save_now = step % cfg.train.checkpoint_every < n or step >= cfg.train.steps or stopping
            if log_now or save_now:
                summary, bad_step, bad = _summarize(pending, step - n * len(pending), exp.pmap)
                pending = []
                if bad_step is not None:
                    if cfg.train.on_nonfinite != "rollback" or rollbacks >= cfg.train.max_rollbacks:
                        after = f" after {rollbacks} rollbacks" if rollbacks else ""
                        text = f"training diverged: non-finite {', '.join(bad)} at step {bad_step}{after}"
                        writer.write(bad_step, {"event": "diverged", "nonfinite": ", ".join(bad)})
                        writer.message(text)
                        raise TrainingDiverged(text)
                    rollbacks += 1
                    step, state = _rollback(exp, ckpt, writer, bad_step, bad, rollbacks)
                    last_log_step, last_log_time = step, time.time()
                    continue
                if log_now:
                    now = time.time()
                    summary["seconds_per_step"] = (now - last_log_time) / max(step - last_log_step, 1)
                    last_log_time, last_log_step, last_metrics = now, step, summary
                    writer.write(step, summary)
                if save_now:
                    save(step, state)
            if step % cfg.train.sample_every < n or step >= cfg.train.steps:
                if exp.objective.generates:
                    writer.image(step, "samples", write_samples(exp, unreplicated(state), workdir, step, is_writer))
                if is_writer:
                    report.refresh(workdir)
            if cfg.eval.every and (step % cfg.eval.every < n or step >= cfg.train.steps):
                stop.phase = f"evaluating step {step}"
                results = evaluators.run_all(exp, unreplicated(state), step, eval_names)
                writer.write(step, {"event": "eval", **evaluators.flat(results)})
            if stopping or step >= cfg.train.steps:
                ckpt.wait()
                stop.newest_checkpoint = saving
            stop.phase = "training"
            if stopping:
                writer.message(f"{stopping}: saved the checkpoint at step {step}; run the same command to resume")
                break
        completed = True
    finally:
        if pipeline is not None:
            pipeline.close()
        writer.close(failing=not completed)
    return last_metrics


def _rollback(exp, ckpt, writer, bad_step: int, bad: list[str], rollbacks: int):
    """(step, state) of the last good checkpoint (or step 0), with a fresh key fold."""
    cfg = exp.cfg
    ckpt.wait()
    good_step, restored = ckpt.restore_latest_good(exp.abstract_state(), report=writer.message, quarantine=True)
    if restored is None:
        good_step, restored = 0, exp.init_state()
    # A fresh key fold, so the rerun does not draw the noise that diverged.
    fold = keys.ROLLBACK + rollbacks
    restored = restored.replace(key=jax.random.fold_in(restored.key, fold))
    state = parallel.pmap_replicate(restored) if exp.pmap else restored
    writer.message(f"non-finite {', '.join(bad)} at step {bad_step}: rolled back to step {good_step} with a fresh "
                   f"key (rollback {rollbacks} of {cfg.train.max_rollbacks})")
    writer.write(good_step, {"event": "rollback", "nonfinite_step": bad_step, "nonfinite": ", ".join(bad),
                             "rollback": rollbacks, "key_fold": fold})
    return good_step, state


def _summarize(pending: list, first_step: int, pmap: bool) -> tuple[dict, int | None, list[str]]:
    """Means of the metrics since the last log; the first step whose values were non-finite and the
    quantities that were non-finite there ('parameters' when only the parameters were)."""
    fetched = jax.device_get(pending)
    stacked = {k: np.concatenate([np.asarray(m[k][0] if pmap else m[k]).reshape(-1) for m in fetched])
               for k in fetched[0]}
    finite = stacked.pop("finite").astype(bool)
    summary = {k: float(np.mean(v)) for k, v in stacked.items()}
    if finite.all():
        return summary, None, []
    i = int(np.argmin(finite))
    bad = [k for k, v in stacked.items() if not np.isfinite(v[i])] or ["parameters"]
    return summary, first_step + i + 1, bad


def write_samples(exp: Experiment, state, workdir: str, step: int, is_writer: bool) -> str:
    """samples/step_XXXXXXX.png: an 8x8 grid from the fixed latents, or a scatter over the real points;
    returns its path ('' on processes other than 0, which draw the samples but write nothing)."""
    n = 1000 if exp.dataset.mixture is not None else 64
    generated = exp.sample(state, n)
    if not is_writer:
        return ""
    path = os.path.join(workdir, "samples", f"step_{step:07d}.png")
    try:
        with disk.writing(f"writing {path}"):
            if exp.dataset.mixture is not None:
                real = np.asarray(sample_mixture(exp.dataset.mixture, jax.random.PRNGKey(0), 1000))
                sample_io.save_scatter(path, generated, real)
            else:
                sample_io.save_grid(path, sample_io.to_uint8(generated, exp.unit_range))
    except disk.DiskFull:
        with contextlib.suppress(OSError):
            os.remove(path)  # a cut PNG would be drawn into progress.gif and the report
        raise
    return path
