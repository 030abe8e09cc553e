"""The training loop: compiles the pure step once, feeds it the deterministic global batches,
logs every `train.log_every` steps (the only host synchronization), writes sample grids and
checkpoints, resumes from the newest intact checkpoint, stops cleanly on SIGTERM/SIGINT and
stops or rolls back on non-finite values."""

import json
import os
import signal
import time

import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from gan_jax import parallel
from gan_jax.data.pipeline import InputPipeline
from gan_jax.data.synthetic import sample_mixture
from gan_jax.evaluate import samples as sample_io
from gan_jax.experiment import Experiment, prepare_workdir
from gan_jax.writers import MetricWriter


class TrainingDiverged(RuntimeError):
    """A loss or a parameter became NaN or inf."""


class _StopRequest:
    """Turns SIGTERM/SIGINT into a flag that the loop checks between calls: the current call
    finishes, a checkpoint is written and the run exits normally (status 0)."""

    def __init__(self):
        self.signal = None
        self._previous = {}

    def __enter__(self):
        for s in (signal.SIGTERM, signal.SIGINT):
            self._previous[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:  # asked twice: stop now, as without the handler (no checkpoint)
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name} while saving after {self.signal}")
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def compile_step(exp: Experiment, state_shardings):
    """The jitted (or pmapped) multi-step: (state, batches) -> (state, stacked metrics); state donated.
    Under pmap the metrics come back as the first local device's copy, (1, K), so that every process
    can read them (the full (devices, K) output spans other processes' devices)."""
    b = exp.builder
    if exp.pmap:
        pmapped = jax.pmap(b.multi_step, axis_name=parallel.PMAP_AXIS, donate_argnums=0)

        def step(state, batches):
            state, metrics = pmapped(state, batches)
            return state, parallel.pmap_local(metrics)

        return step
    batch_sharding = parallel.batch_sharding(exp.mesh, 3 + len(exp.example_shape), batch_axis=2)
    in_shardings = (state_shardings, None if exp.images is None else batch_sharding)
    return jax.jit(b.multi_step, in_shardings=in_shardings,
                   out_shardings=(state_shardings, NamedSharding(exp.mesh, P())), donate_argnums=0)


def train(cfg: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains to `cfg.train.steps` in `workdir`, resuming from its newest intact checkpoint.
    Returns the last logged metrics. Raises TrainingDiverged on non-finite values (after
    `train.max_rollbacks` rollbacks with train.on_nonfinite='rollback')."""
    exp = Experiment(cfg)
    is_writer = jax.process_index() == 0
    if is_writer:
        prepare_workdir(workdir, cfg)
    os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
    ckpt = exp.checkpointer(workdir)
    writer = MetricWriter(workdir, cfg.train.steps, enabled=is_writer)
    config_json = json.loads(cfg.to_json())
    shardings = exp.state_shardings()
    partial = ckpt.cleanup_partial()
    if partial:
        writer.message(f"removed {len(partial)} unfinished checkpoint save(s): {', '.join(partial)}")
    start, state = ckpt.restore_latest_good(exp.abstract_state(), report=writer.message, quarantine=True)
    if state is None:
        state = exp.init_state()
        start = 0
    else:
        writer.message(f"resumed from checkpoint at step {start}")
    pipeline = None
    if exp.images is not None:
        data_seed = cfg.seed if cfg.data.seed is None else cfg.data.seed
        pipeline = InputPipeline(exp.images, cfg.data.batch_size, data_seed, cfg.train.n_critic,
                                 cfg.train.steps_per_call, prefetch=cfg.data.prefetch)
    step_fn = compile_step(exp, shardings)
    batch_sharding = parallel.batch_sharding(exp.mesh, 3 + len(exp.example_shape), batch_axis=2)

    def device_batch(step):
        if pipeline is None:
            return None
        local = pipeline.get(step)
        if exp.pmap:
            return parallel.pmap_split(local, batch_axis=2)
        return parallel.global_batch_array(local, batch_sharding, batch_axis=2)

    if exp.pmap:
        state = parallel.pmap_replicate(state)
    unreplicated = (lambda s: parallel.pmap_unreplicate(s, exp.mesh)) if exp.pmap else (lambda s: s)

    def save(step, state):
        # Wait for the step itself first, so that the figure is the time the save holds the loop up.
        jax.block_until_ready(state)
        t = time.perf_counter()
        ckpt.save(step, unreplicated(state), config=config_json)
        writer.write(step, {"event": "checkpoint", "checkpoint_blocking_s": time.perf_counter() - t})

    k = cfg.train.steps_per_call
    step, pending, last_log_time, last_log_step = start, [], time.time(), start
    rollbacks, last_metrics = 0, {}
    with _StopRequest() as stop:
        try:
            while step < cfg.train.steps:
                state, metrics = step_fn(state, device_batch(step))
                pending.append(metrics)
                step += k
                stopping = stop.signal  # read once: a signal arriving later in this pass waits for the next
                log_now = step % cfg.train.log_every < k or step >= cfg.train.steps
                save_now = step % cfg.train.checkpoint_every < k or step >= cfg.train.steps or stopping
                if log_now or save_now:
                    summary, bad_step, bad = _summarize(pending, step - k * len(pending), exp.pmap)
                    pending = []
                    if bad_step is not None:
                        if cfg.train.on_nonfinite != "rollback" or rollbacks >= cfg.train.max_rollbacks:
                            after = f" after {rollbacks} rollbacks" if rollbacks else ""
                            text = f"training diverged: non-finite {', '.join(bad)} at step {bad_step}{after}"
                            writer.write(bad_step, {"event": "diverged", "nonfinite": ", ".join(bad)})
                            writer.message(text)
                            raise TrainingDiverged(text)
                        rollbacks += 1
                        ckpt.wait()
                        good_step, restored = ckpt.restore_latest_good(exp.abstract_state(), report=writer.message,
                                                                       quarantine=True)
                        if restored is None:
                            good_step, restored = 0, exp.init_state()
                        # A fresh key fold, so the rerun does not draw the noise that diverged.
                        fold = 10_000 + rollbacks
                        restored = restored.replace(key=jax.random.fold_in(restored.key, fold))
                        state = parallel.pmap_replicate(restored) if exp.pmap else restored
                        writer.message(f"non-finite {', '.join(bad)} at step {bad_step}: rolled back to step "
                                       f"{good_step} with a fresh key (rollback {rollbacks} of "
                                       f"{cfg.train.max_rollbacks})")
                        writer.write(good_step, {"event": "rollback", "nonfinite_step": bad_step,
                                                 "nonfinite": ", ".join(bad), "rollback": rollbacks,
                                                 "key_fold": fold})
                        step, last_log_step, last_log_time = good_step, good_step, time.time()
                        continue
                    if log_now:
                        now = time.time()
                        summary["seconds_per_step"] = (now - last_log_time) / max(step - last_log_step, 1)
                        last_log_time, last_log_step, last_metrics = now, step, summary
                        writer.write(step, summary)
                    if save_now:
                        save(step, state)
                if step % cfg.train.sample_every < k or step >= cfg.train.steps:
                    write_samples(exp, unreplicated(state), workdir, step, is_writer)
                if stopping:
                    ckpt.wait()
                    writer.message(f"{stopping}: saved the checkpoint at step {step}; "
                                   f"run the same command to resume")
                    break
        finally:
            if pipeline is not None:
                pipeline.close()
            try:
                ckpt.close()
            finally:
                writer.close()
    return last_metrics


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


def write_samples(exp: Experiment, state, workdir: str, step: int, is_writer: bool) -> None:
    """samples/step_XXXXXXX.png: an 8x8 grid from the fixed latents, or a scatter over the real points."""
    n = 1000 if exp.dataset.mixture is not None else 64
    generated = exp.sample(state, n)
    if not is_writer:
        return
    path = os.path.join(workdir, "samples", f"step_{step:07d}.png")
    if exp.dataset.mixture is not None:
        real = np.asarray(sample_mixture(exp.dataset.mixture, jax.random.PRNGKey(0), 1000))
        sample_io.save_scatter(path, generated, real)
    else:
        sample_io.save_grid(path, sample_io.to_uint8(generated, exp.cfg.objective))
