"""Run outputs: metrics.jsonl (one JSON object per logged step), TensorBoard events, optionally Weights &
Biases (config.log.wandb; `pip install -e '.[wandb]'`), and a progress bar on a terminal (plain log
lines otherwise). Only process 0 writes."""

import contextlib
import json
import os
import secrets
import sys
import time

import jax
import ml_collections

from gan_jax import disk
from gan_jax.errors import ConfigError

WANDB_ID_FILE = "wandb_run_id"  # the W&B run of a workdir, so that a resumed run logs into the same one
METRICS_FILE = "metrics.jsonl"
_reported_skips: set[tuple[str, int]] = set()  # (path, lines skipped) already said by read_metrics


def read_metrics(workdir: str) -> list[dict]:
    """The records of WORKDIR/metrics.jsonl in order ([] without the file); the one reader of the log.
    A line that is not a JSON object (a write cut by a kill, or one still being written) is skipped,
    and said once per process on stderr with the file and the number of lines skipped."""
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        return []
    records, skipped = [], 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in filter(str.strip, f):
            record = _record_or_none(line)
            if record is None:
                skipped += 1
            else:
                records.append(record)
    if skipped and (path, skipped) not in _reported_skips:
        _reported_skips.add((path, skipped))
        print(f"{path}: skipped {skipped} line(s) that are not complete JSON records (a write cut by a kill, "
              "or one in progress)", file=sys.stderr, flush=True)
    return records


def _record_or_none(line: str) -> dict | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def truncate_torn_tail(path: str, block: int = 1 << 16) -> int:
    """Cuts the file at `path` back to its last complete line (its last b"\\n"; to nothing without
    one) when its last byte is not a newline, as a kill in the middle of a write leaves it, so that
    what is appended next starts a line of its own. Returns the bytes removed (0: nothing to do)."""
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0 or os.pread(f.fileno(), 1, size - 1) == b"\n":
            return 0
        end = size  # the torn line starts after the last newline before `end`
        while end > 0:
            start = max(0, end - block)
            newline = os.pread(f.fileno(), end - start, start).rfind(b"\n")
            if newline >= 0:
                end = start + newline + 1
                break
            end = start
        f.truncate(end)
    return size - end


def check_wandb(cfg: ml_collections.ConfigDict) -> None:
    """Refuses log.wandb=True without the wandb package, before anything is written."""
    if cfg.log.wandb:
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise ConfigError("log.wandb=True needs the wandb package; accepted: pip install -e '.[wandb]', "
                              "or log.wandb=False") from None


class MetricWriter:
    def __init__(self, workdir: str, total_steps: int, enabled: bool | None = None,
                 cfg: ml_collections.ConfigDict | None = None):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self.total_steps = total_steps
        self.tty = sys.stderr.isatty()
        self._start, self._start_step = None, None
        self._wandb = None
        self.workdir = workdir
        if not self.enabled:
            return
        if cfg is not None and cfg.log.wandb:
            self._wandb = _start_wandb(workdir, cfg)
        self._jsonl = _open_log(os.path.join(workdir, METRICS_FILE))
        from tensorboardX import SummaryWriter

        disk.quiet_event_threads()
        with disk.writing(f"writing TensorBoard events in {workdir}"):
            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, metrics: dict) -> None:
        """Appends {'step': step, **metrics} (floats) and shows progress."""
        if not self.enabled:
            return
        record = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
        self._append(json.dumps(record) + "\n")
        scalars = {k: v for k, v in record.items() if k != "step" and isinstance(v, int | float)
                   and not isinstance(v, bool)}
        with disk.writing(f"writing TensorBoard events in {self.workdir}"):
            for k, v in scalars.items():
                self._tb.add_scalar(k, v, step)
            self._tb.flush()
        if self._wandb is not None and scalars:
            self._wandb.log(scalars, step=int(step))
        self.progress(step, metrics)

    def _append(self, line: str) -> None:
        """Appends a whole line to metrics.jsonl or, on a full disk, nothing: a cut line is truncated
        away, so that the file stays one JSON object per line for the resumed run and its readers."""
        start = os.fstat(self._jsonl).st_size
        data = memoryview(line.encode())
        try:
            with disk.writing(f"writing metrics.jsonl in {self.workdir}"):
                while data:
                    data = data[os.write(self._jsonl, data):]
        except disk.DiskFull:
            os.ftruncate(self._jsonl, start)
            raise

    def progress(self, step: int, metrics: dict) -> None:
        now = time.time()
        if self._start is None:
            self._start, self._start_step = now, step
        rate = (step - self._start_step) / max(now - self._start, 1e-9)
        if rate == 0 and isinstance(_plain(metrics.get("seconds_per_step")), float):
            rate = 1.0 / max(_plain(metrics["seconds_per_step"]), 1e-9)  # the first line: the step's own time
        eta = (self.total_steps - step) / rate if rate > 0 else float("nan")
        shown = " ".join(f"{k}={_plain(v):.4g}" for k, v in metrics.items()
                         if isinstance(_plain(v), int | float) and not isinstance(_plain(v), bool)
                         and not k.startswith("lr"))
        if self.tty:
            done = int(30 * step / max(self.total_steps, 1))
            sys.stderr.write(f"\r[{'#' * done}{'.' * (30 - done)}] {step}/{self.total_steps} "
                             f"{rate:.2f} steps/s ETA {_duration(eta)} {shown}\033[K")
            sys.stderr.flush()
        else:
            print(f"step {step}/{self.total_steps} {rate:.2f} steps/s ETA {_duration(eta)} {shown}", flush=True)

    def image(self, step: int, name: str, path: str) -> None:
        """A picture of the run (a sample grid) at `step`: W&B only (TensorBoard users open the PNGs)."""
        if self.enabled and self._wandb is not None:
            import wandb

            self._wandb.log({name: wandb.Image(path)}, step=int(step))

    def message(self, text: str) -> None:
        if self.enabled:
            print(("\n" if self.tty else "") + text, flush=True)

    def close(self, failing: bool = False) -> None:
        """Closes the files. `failing`: the run is stopping on an error, which stays the one reported
        (events that do not fit on a full disk then are lost, as the error says)."""
        if self.enabled:
            if self.tty:
                sys.stderr.write("\n")
            os.close(self._jsonl)
            with contextlib.suppress(disk.DiskFull) if failing else contextlib.nullcontext():
                with disk.writing(f"writing TensorBoard events in {self.workdir}"):
                    self._tb.close()
            if self._wandb is not None:
                self._wandb.finish()


def _open_log(path: str) -> int:
    """A file descriptor of `path` for appending, a torn last line (a killed run's) cut first, and said
    on stdout with the other start-up messages: appended to, it would swallow the next record.
    Unbuffered: a line that a full disk cuts short can be taken back (`MetricWriter._append`)."""
    if os.path.exists(path):
        removed = truncate_torn_tail(path)
        if removed:
            print(f"{path}: removed an incomplete last line ({removed} bytes, a write cut when the run was "
                  "killed) before appending", flush=True)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def _start_wandb(workdir: str, cfg: ml_collections.ConfigDict):
    """A W&B run for this workdir (the same one when the run resumes), its config the run's config.
    Offline where WANDB_MODE=offline (then `wandb sync` uploads it)."""
    import wandb

    id_path = os.path.join(workdir, WANDB_ID_FILE)
    if os.path.exists(id_path):
        with open(id_path) as f:
            run_id = f.read().strip()
    else:
        run_id = secrets.token_hex(8)  # W&B run ids: letters and digits
        with open(id_path, "w") as f:
            f.write(run_id)
    tags = [t.strip() for t in cfg.log.wandb_tags.split(",") if t.strip()]
    return wandb.init(project=cfg.log.wandb_project, name=cfg.log.wandb_name or os.path.basename(workdir),
                      tags=tags, config=json.loads(cfg.to_json()), dir=workdir, id=run_id, resume="allow")


def _plain(v):
    """A JSON value: ints stay ints (counters, steps), other numbers and 0-d arrays become floats."""
    if isinstance(v, bool | str):
        return v
    if isinstance(v, int) or (hasattr(v, "dtype") and getattr(v, "ndim", 1) == 0 and v.dtype.kind in "iu"):
        return int(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def _duration(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
