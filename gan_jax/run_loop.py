"""One run's side of training, the same whether it trains alone (training.py) or stacked with others
in one program (vectorized.py): its workdir and lock, its checkpoints and resumption, its input
pipeline and metric writer, and what follows each step call of n updates: the metrics since the last
log summarized every `train.log_every` steps (the only host synchronization), non-finite values
stopping or rolling back the run, checkpoints, sample grids and evaluations."""

import contextlib
import json
import os
import time
from collections.abc import Callable

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from gan_jax import keys, report, signals
from gan_jax.data.pipeline import InputPipeline
from gan_jax.errors import UserError
from gan_jax.evaluate import evaluators
from gan_jax.experiment import Experiment, check_workdir_config, make_workdir, write_workdir_config
from gan_jax.grids import write_samples
from gan_jax.lock import LOCK_NAME, WorkdirLock
from gan_jax.step import train_arrays
from gan_jax.writers import MetricWriter

# What Run.after_call returns besides None (the run goes on).
FINISHED = "finished"
DIVERGED = "diverged"  # Run.divergence says why, in one line
ROLLBACK = "rollback"  # the caller continues from Run.roll_back()'s state
# The report's figures (curves, the grids' animation) are redrawn with a sample grid or an evaluation at
# most this often, and always at the run's end or stop: drawing them costs about half a second.
REPORT_EVERY_SECONDS = 30.0


class Workdir(contextlib.ExitStack):
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


class Run:
    """A run's checkpoints, writer, input pipeline, step and the metrics of the calls since its last
    log. `row`: where the run's metrics sit in a call's output, whose leaves are (K,) (None), or
    (rows, K) (pmap: the local device's row 0; vectorized: the run's index). `alone`: the process
    trains this run only, so the third signal's message names its newest checkpoint."""

    def __init__(self, exp: Experiment, workdir: str, stop: signals.StopRequest, row: int | None = None,
                 alone: bool = True):
        self.exp, self.cfg, self.workdir, self.stop, self.row, self.alone = exp, exp.cfg, workdir, stop, row, alone
        self.is_writer = jax.process_index() == 0
        self.ckpt = exp.checkpointer(workdir)
        self.config_json = json.loads(self.cfg.to_json())
        self.step, self.rollbacks = 0, 0
        self.writer, self.pipeline, self.eval_names = None, None, []
        self.pending: list = []  # each call's metrics since the last summary
        self.last_log = (time.time(), 0)  # (time, step) of the last log line
        self.last_metrics: dict = {}  # the last logged summary
        self.last_report = time.time()  # when the report's figures were last redrawn
        self.saving = None  # the step whose save may still be running in the background
        self.nonfinite: tuple[int, list[str]] | None = None  # (step, quantities) of ROLLBACK
        self.divergence = ""  # the one-line reason of DIVERGED

    # --- start and end -----------------------------------------------------------------------
    def restore(self, had_run: bool):
        """The run's state on the mesh, from its newest intact checkpoint or step 0's; sets `step`."""
        report_line = lambda text: print(text, flush=True) if self.is_writer else None
        partial = self.ckpt.cleanup_partial()
        if partial:
            report_line(f"removed {len(partial)} unfinished checkpoint save(s): {', '.join(partial)}")
        start, state = self.ckpt.restore_latest_good(self.exp.abstract_state(), report=report_line, quarantine=True)
        if state is not None:
            report_line(f"resumed from checkpoint at step {start}")
            self.step = start
            return state
        if had_run:
            report_line(f"{self.workdir} holds a run (config.json) but no intact checkpoint in {self.ckpt.directory}: "
                        "training from step 0")
        self.step = 0
        return self.exp.init_state()

    def start(self, eval_names: list[str]) -> None:
        """Writes the run's config.json, opens the writer and the input pipeline, from `step` on."""
        cfg = self.cfg
        self.eval_names = eval_names
        if self.is_writer:
            write_workdir_config(self.workdir, cfg)
            if self.exp.objective.generates:
                os.makedirs(os.path.join(self.workdir, "samples"), exist_ok=True)
        self.writer = MetricWriter(self.workdir, cfg.train.steps, enabled=self.is_writer, cfg=cfg)
        if self.exp.images is not None:
            data_seed = cfg.seed if cfg.data.seed is None else cfg.data.seed
            self.pipeline = InputPipeline(train_arrays(self.exp), cfg.data.batch_size, data_seed, cfg.train.n_critic,
                                          cfg.train.steps_per_call, prefetch=cfg.data.prefetch)
        self.last_log = (time.time(), self.step)

    def finish(self, failing: bool) -> None:
        """Closes the pipeline and the writer; `failing`: an error is on its way up (MetricWriter.close)."""
        if self.pipeline is not None:
            self.pipeline.close()
        if self.writer is not None:
            self.writer.close(failing=failing)

    def close(self) -> None:
        self.ckpt.close()

    def newest_kept(self) -> int | None:
        """After a full disk: the newest checkpoint on disk, once a save still under way has ended (it
        may have completed, or failed for the same reason)."""
        with contextlib.suppress(UserError):
            self.ckpt.wait()
        return self.ckpt.newest_on_disk()

    # --- after each call ---------------------------------------------------------------------
    def batch(self, n: int):
        """The next call's local batches, n updates' worth (None without training data)."""
        if self.pipeline is None:
            return None
        return jax.tree.map(lambda a: a[:n], self.pipeline.get(self.step))

    def after_call(self, metrics, n: int, stopping: str | None, state_of: Callable[[], object]) -> str | None:
        """After a call of n updates that returned `metrics`: logs, checkpoints, writes the sample grid and
        evaluates where due; `stopping` (a signal's name) saves now. `state_of()` gives the run's state
        laid out as Experiment.init_state places it (asked for only when needed). Returns FINISHED,
        DIVERGED, ROLLBACK (nothing else done) or None."""
        cfg, exp = self.cfg, self.exp
        self.pending.append(metrics)
        self.step += n
        step, done = self.step, self.step >= cfg.train.steps
        log_now = step % cfg.train.log_every < n or done
        save_now = step % cfg.train.checkpoint_every < n or done or bool(stopping)
        if log_now or save_now:
            summary, bad_step, bad = summarize(self.pending, step - n * len(self.pending), self.row)
            self.pending = []
            if bad_step is not None:
                return self._on_nonfinite(bad_step, bad)
            if log_now:
                now, (then, then_step) = time.time(), self.last_log
                summary["seconds_per_step"] = (now - then) / max(step - then_step, 1)  # vectorized: of all runs
                self.last_log, self.last_metrics = (now, step), summary
                self.writer.write(step, summary)
        sample_now = step % cfg.train.sample_every < n or done
        eval_now = bool(cfg.eval.every) and (step % cfg.eval.every < n or done)
        state = state_of() if save_now or sample_now or eval_now else None
        if save_now:
            self._save(state)
        if sample_now and exp.objective.generates:
            self.writer.image(step, "samples", write_samples(exp, state, self.workdir, step, self.is_writer))
        if eval_now:
            self.stop.phase = f"evaluating step {step}"
            results = evaluators.run_all(exp, state, step, self.eval_names, self.workdir if self.is_writer else None)
            self.writer.write(step, {"event": "eval", **evaluators.flat(results)})
        due = done or bool(stopping) or time.time() - self.last_report >= REPORT_EVERY_SECONDS
        if (sample_now or eval_now) and due and self.is_writer:  # after the evaluation: the curves show it
            report.refresh(self.workdir)
            self.last_report = time.time()
        if stopping or done:
            self.ckpt.wait()
            if self.alone:
                self.stop.newest_checkpoint = self.saving
        self.stop.phase = "training"
        return FINISHED if done else None

    def say_stopped(self, signal_name: str) -> None:
        self.writer.message(f"{signal_name}: saved the checkpoint at step {self.step}; run the same command to resume")

    def _save(self, state) -> None:
        # Wait for the step itself first, so that the figure is the time the save holds the loop up.
        jax.block_until_ready(state)
        t = time.perf_counter()
        self.stop.phase = f"saving checkpoint {self.step}"
        self.ckpt.save(self.step, state, config=self.config_json)  # waits for the previous save first
        if self.alone and self.saving is not None:
            self.stop.newest_checkpoint = self.saving
        self.saving = self.step
        self.writer.write(self.step, {"event": "checkpoint", "checkpoint_blocking_s": time.perf_counter() - t})

    def _on_nonfinite(self, bad_step: int, bad: list[str]) -> str:
        cfg = self.cfg
        if cfg.train.on_nonfinite != "rollback" or self.rollbacks >= cfg.train.max_rollbacks:
            after = f" after {self.rollbacks} rollbacks" if self.rollbacks else ""
            self.divergence = f"training diverged: non-finite {', '.join(bad)} at step {bad_step}{after}"
            self.writer.write(bad_step, {"event": "diverged", "nonfinite": ", ".join(bad)})
            return DIVERGED
        self.nonfinite = (bad_step, bad)
        return ROLLBACK

    def roll_back(self):
        """After ROLLBACK: the state of the last good checkpoint (or step 0) with a fresh key fold, laid
        out as Experiment.init_state places it; sets `step` to its step."""
        bad_step, bad = self.nonfinite
        self.rollbacks += 1
        self.ckpt.wait()
        good_step, restored = self.ckpt.restore_latest_good(self.exp.abstract_state(), report=self.writer.message,
                                                            quarantine=True)
        if restored is None:
            good_step, restored = 0, self.exp.init_state()
        # A fresh key fold, so the rerun does not draw the noise that diverged.
        fold = keys.ROLLBACK + self.rollbacks
        restored = restored.replace(key=jax.random.fold_in(restored.key, fold))
        self.writer.message(f"non-finite {', '.join(bad)} at step {bad_step}: rolled back to step {good_step} with a "
                            f"fresh key (rollback {self.rollbacks} of {self.cfg.train.max_rollbacks})")
        self.writer.write(good_step, {"event": "rollback", "nonfinite_step": bad_step, "nonfinite": ", ".join(bad),
                                      "rollback": self.rollbacks, "key_fold": fold})
        self.step, self.last_log, self.nonfinite = good_step, (time.time(), good_step), None
        return restored


def summarize(pending: list, first_step: int, row: int | None = None) -> tuple[dict, int | None, list[str]]:
    """Means of the metrics of the calls in `pending` (leaves (K,), or (rows, K) of which `row` is the
    run's); the first step whose values were non-finite and the quantities that were non-finite there
    ('parameters' when only the parameters were)."""
    fetched = jax.device_get(pending)
    stacked = {k: np.concatenate([np.asarray(m[k] if row is None else m[k][row]).reshape(-1) for m in fetched])
               for k in fetched[0]}
    finite = stacked.pop("finite").astype(bool)
    summary = {k: float(np.mean(v)) for k, v in stacked.items()}
    if finite.all():
        return summary, None, []
    i = int(np.argmin(finite))
    bad = [k for k, v in stacked.items() if not np.isfinite(v[i])] or ["parameters"]
    return summary, first_step + i + 1, bad
