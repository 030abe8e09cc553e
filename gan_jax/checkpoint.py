"""Checkpoints with orbax: the whole train state (every network's parameters, BatchNorm statistics,
optimizer states, the step and the base key), a checksum of it, and the config, so that a damaged
checkpoint is detected on restore and the previous good one is used instead of garbage.

Orbax writes each step into `STEP.orbax-checkpoint-tmp-*` and renames it when complete, so a save cut
short (kill -9) is never listed as a step; training removes such leftovers (`cleanup_partial`).
A step that is listed but does not read back intact is moved to `damaged_checkpoints/` next to the
checkpoint folder (`quarantine`): orbax would otherwise refuse to save that step again, because it
never writes a step at or below the newest one it lists. Nothing is loaded from pickles: arrays
are restored from tensorstore into the given ShapeDtypeStructs, so restore targets the shardings
of the current mesh and a run can resume on a different number of devices."""

import glob
import json
import logging
import os
import re
import shutil
import sys
import time
import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from gan_jax.disk import DiskFull, is_disk_full
from gan_jax.errors import UserError

TMP_SUFFIX = ".orbax-checkpoint-tmp"


class CheckpointError(UserError):
    """No checkpoint could be written or read."""


@jax.jit
def state_checksum(tree) -> jax.Array:
    """A uint32 checksum of every bit of every array: position-weighted sums of the 32-bit words.
    Integer sums wrap mod 2**32 in any order, so the value does not depend on the sharding."""
    total = jnp.uint32(0)
    for i, x in enumerate(jax.tree.leaves(tree)):
        x = jnp.asarray(x)
        if x.dtype.itemsize != 4:
            x = x.astype(jnp.float32)
        words = jax.lax.bitcast_convert_type(x, jnp.uint32).reshape(-1)
        weights = jnp.arange(1, words.size + 1, dtype=jnp.uint32) * jnp.uint32(2654435761)
        total = total + jnp.sum(words * weights, dtype=jnp.uint32) * jnp.uint32(2 * i + 1) + words.size
    return total


_STATUS = re.compile(r"([A-Z]+(?:_[A-Z]+)*): ")  # tensorstore's absl status: NOT_FOUND: ..., DATA_LOSS: ...
_LOCAL_FILE = re.compile(r'local file "([^"]+)"')
_OCDBT_KEY = re.compile(r'Error reading "([^"]+)" in OCDBT database at local file "([^"]+)"')
_MAX_DETAIL = 150  # with "checkpoint N in DIR cannot be read: ", a report stays under 200 characters besides DIR


def _chain(e: BaseException) -> list[BaseException]:
    """`e` and the exceptions it was raised from, outermost first (orbax wraps tensorstore's)."""
    out = []
    while e is not None and e not in out:
        out.append(e)
        e = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
    return out


def _short(text: str, limit: int = _MAX_DETAIL) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _relative(path: str, root: str | None) -> str:
    if root and os.path.abspath(path).startswith(root.rstrip(os.sep) + os.sep):
        return os.path.relpath(path, root) + (os.sep if path.endswith(os.sep) else "")
    return path


def _tensorstore_reason(text: str, root: str | None) -> str | None:
    """'FILE is missing/damaged (CODE: detail)' from a tensorstore status message, whose full text
    (spec reprs and all) runs to thousands of characters."""
    status = _STATUS.match(text)
    if not status:
        return None
    code, text = status.group(1), text.split(" [tensorstore_spec")[0].split(" [source locations")[0]
    files = _LOCAL_FILE.findall(text)
    key = _OCDBT_KEY.search(text)
    # The innermost file named is the one that failed; a folder means a key inside an OCDBT database.
    if files and not files[-1].endswith("/"):
        where = _relative(files[-1], root)
    elif key:
        where = f"{_relative(key.group(2), root)} (array {key.group(1).rsplit('/', 1)[0]})"
    elif files:
        where = _relative(files[-1], root)
    else:
        where = None
    detail = text.rsplit(": ", 1)[-1]
    if where is None:
        return _short(f"{code}: {detail}")
    state = "is missing" if code == "NOT_FOUND" else "is damaged"
    if code == "NOT_FOUND" and "local file" in detail:  # 'Error reading Byte range ... of local file': says no more
        return f"{where} {state} ({code})"
    return f"{where} {state} ({code}: {_short(detail, 80)})"


def _reason(e: BaseException, root: str | None = None) -> str:
    """One line for an exception from orbax, tensorstore or the OS, naming the file that failed
    when they say which; paths inside `root` (the checkpoint's folder) are given relative to it."""
    chain = _chain(e)
    for x in chain:
        if isinstance(x, OSError) and x.strerror:
            return f"{x.strerror} ({_relative(x.filename, root)})" if x.filename else x.strerror
    for x in chain:
        # tensorstore's messages run to hundreds of characters; the OS error it wraps is what matters.
        code = re.search(r"os_error_code='(\d+)'", str(x))
        if code:
            return f"{os.strerror(int(code.group(1)))} (errno {code.group(1)})"
    for x in reversed(chain):
        reason = _tensorstore_reason(str(x).strip(), root)
        if reason:
            return reason
    # orbax's own messages end in a repr of the whole TensorStore spec, cut to the sentence before it.
    text = str(e).split(" See full TensorStore details")[0].strip().splitlines()
    return _short(f"{type(e).__name__}: {text[0] if text else ''}")


def _damaged_file(step_dir: str) -> str | None:
    """Which of the files a restore needs is missing or not JSON, if any: a failed restore does not
    say (a missing _METADATA makes orbax complain about pytree types, a cut one about JSON)."""
    def json_problem(relative: str) -> str | None:
        path = os.path.join(step_dir, relative)
        try:
            with open(path) as f:
                json.load(f)
        except FileNotFoundError:
            return f"{relative} is missing"
        except (OSError, ValueError) as e:
            return f"{relative} is damaged ({_short(str(e), 80)})"
        return None

    if not os.path.isdir(os.path.join(step_dir, "state")):
        return "state/ is missing"
    for relative in (os.path.join("state", "_METADATA"), os.path.join("checksum", "metadata"),
                     *sorted(os.path.relpath(p, step_dir) for p in glob.glob(
                         os.path.join(glob.escape(step_dir), "state", "array_metadatas", "*")))):
        problem = json_problem(relative)
        if problem:
            return problem
    ocdbt = glob.glob(os.path.join(glob.escape(step_dir), "state", "ocdbt.process_*"))
    if ocdbt and not os.path.isfile(os.path.join(step_dir, "state", "manifest.ocdbt")):
        return "state/manifest.ocdbt is missing"
    return None


# When one array of a damaged checkpoint fails to read, orbax returns at once and closes its event
# loop while the reads of the other arrays are still under way. Each of those then reports itself
# on stderr when its tensorstore thread finishes or when it is garbage collected: 'Event loop is
# closed', exceptions raised from coroutine cleanup, 'Future exception was never retrieved',
# 'coroutine ... was never awaited': tens to hundreds of lines of tracebacks after our one-line
# report. The filters below drop exactly these and pass everything else on. The coroutines named
# are those of orbax's restore path (orbax/checkpoint/_src/serialization) that can be left pending.
_ABANDONED_COROUTINES = (r"coroutine '([\w.]*\.)?(_read_array_index_and_device_put|_read_and_create_array|_read_shard"
                         r"|async_deserialize|_async_deserialize|_get_array_metadatas)' was never awaited")


def _from_tensorstore(exc: BaseException) -> bool:
    return any("tensorstore_spec" in str(x) or "TensorStore" in str(x) for x in _chain(exc))


def _is_abandoned_read(unraisable) -> bool:
    exc, obj = unraisable.exc_value, unraisable.object
    code = getattr(obj, "cr_code", None)
    if code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename:
        return any(isinstance(x, GeneratorExit) for x in _chain(exc))
    if obj is None and isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
        tb = exc.__traceback__
        # Only when called straight from native code (tensorstore's thread), not from Python.
        return tb is not None and tb.tb_frame.f_code.co_name == "call_soon_threadsafe"
    return False


class _AbandonedReadLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        abandoned = (exc is not None and str(record.msg).startswith(("Future exception was never retrieved",
                                                                      "Task exception was never retrieved"))
                     and _from_tensorstore(exc))
        return not abandoned


class _FullDiskSaveLogFilter(logging.Filter):
    """Drops orbax's reports (absl, at ERROR, with a traceback each) of a background save that failed
    on a full disk: every thread of the save logs the same ENOSPC, hundreds of lines in all, and
    Checkpointer.wait raises it again as DiskFull, which training reports in one line. Any other
    failure is logged as before."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (exc is not None and f"{os.sep}orbax{os.sep}" in record.pathname and is_disk_full(exc))


def _add_filter(logger: logging.Logger, kind: type) -> None:
    if not any(isinstance(f, kind) for f in logger.filters):
        logger.addFilter(kind())


def _quiet_abandoned_reads() -> None:
    """Installs the filters once per process (idempotent; another hook installed since is wrapped)."""
    warnings.filterwarnings("ignore", category=RuntimeWarning, message=_ABANDONED_COROUTINES)
    _add_filter(logging.getLogger("asyncio"), _AbandonedReadLogFilter)
    _add_filter(logging.getLogger("absl"), _FullDiskSaveLogFilter)  # orbax logs through absl's logger
    previous = sys.unraisablehook
    if getattr(previous, "_gan_jax_quiet", False):
        return

    def hook(unraisable, previous=previous, is_noise=_is_abandoned_read):
        try:
            if is_noise(unraisable):
                return
        except Exception:  # never lose a report because the filter failed (e.g. at interpreter exit)
            pass
        previous(unraisable)

    hook._gan_jax_quiet = True
    sys.unraisablehook = hook


class Checkpointer:
    """The checkpoints of one run folder. `save` is asynchronous unless `asynchronous=False`: it
    returns once the arrays are copied off the devices and a background thread writes them."""

    def __init__(self, directory: str, max_to_keep: int = 3, asynchronous: bool = True, create: bool = True):
        """`create=False` (sampling, evaluation) leaves a missing folder missing: it has no steps."""
        self.directory = os.path.abspath(directory)
        self._pending: int | None = None  # the step a background save is writing
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise CheckpointError(f"checkpoint folder {self.directory} is a file, not a folder; move it away")
        _quiet_abandoned_reads()
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create,
                                               enable_async_checkpointing=asynchronous)
        try:
            self.manager = ocp.CheckpointManager(self.directory, options=options,
                                                 item_names=("state", "checksum", "config"))
        except (OSError, ValueError) as e:
            raise CheckpointError(f"checkpoint folder {self.directory}: {_reason(e)}") from e

    def all_steps(self) -> list[int]:
        # Orbax versions differ on a folder that was never created (create=False): some raise.
        if not os.path.isdir(self.directory):
            return []
        return sorted(self.manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def save(self, step: int, state, config: dict | None = None, force: bool = False) -> bool:
        """Starts saving `state` (and the JSON-able `config`) as `step`; returns whether a save started.
        Waits for the previous save first. Raises CheckpointError if it or this one cannot be written."""
        self.wait()  # a failed background save is reported under its own step, not this one
        checksum = int(state_checksum(state))
        items = {"state": ocp.args.StandardSave(state), "checksum": ocp.args.JsonSave({"checksum": checksum})}
        if config is not None:
            items["config"] = ocp.args.JsonSave(config)
        try:
            started = self.manager.save(step, args=ocp.args.Composite(**items), force=force)
        except Exception as e:  # ENOSPC, EACCES, a file in the way: orbax re-raises what tensorstore or os said
            raise self._save_error(step, e) from e
        if started:
            self._pending = step
        return started

    def wait(self) -> None:
        """Blocks until the background save (if any) is on disk. Raises CheckpointError if it failed."""
        step, self._pending = self._pending, None
        try:
            self.manager.wait_until_finished()
        except Exception as e:
            raise self._save_error(step, e) from e

    def _save_error(self, step: int | None, e: Exception) -> UserError:
        """DiskFull for ENOSPC (training reports it with the newest kept checkpoint), else CheckpointError."""
        if is_disk_full(e):
            return DiskFull(f"saving checkpoint {step} in {self.directory}")
        return CheckpointError(f"saving checkpoint {step} in {self.directory} failed: {_reason(e)}; "
                               f"earlier checkpoints are untouched")

    def newest_on_disk(self) -> int | None:
        """The newest complete checkpoint on disk: orbax renames a save to its step only once it is
        complete, so this holds after any failed save, whatever orbax's own list says."""
        try:
            steps = [int(name) for name in os.listdir(self.directory) if name.isdigit()]
        except OSError:
            return None
        return max(steps, default=None)

    def restore(self, step: int, abstract_state):
        """The state saved at `step`, placed as `abstract_state` (ShapeDtypeStructs with shardings) says.
        Raises CheckpointError if it cannot be read or its checksum does not match."""
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), checksum=ocp.args.JsonRestore()))
            expected = int(restored["checksum"]["checksum"])
        except Exception as e:  # orbax, tensorstore and json raise many types for damaged files
            folder = os.path.join(self.directory, str(step))
            reason = _damaged_file(folder) or _reason(e, folder)
            raise CheckpointError(f"checkpoint {step} in {self.directory} cannot be read: {reason}") from e
        got = int(state_checksum(restored["state"]))
        if got != expected:
            raise CheckpointError(f"checkpoint {step} in {self.directory} is damaged: "
                                  f"checksum {got} != saved {expected}")
        return restored["state"]

    def restore_latest_good(self, abstract_state, report: Callable[[str], None] = print, step: int | None = None,
                            quarantine: bool = False):
        """(step, state) of the newest checkpoint (at most `step`) that reads back intact, or (None, None).
        Each damaged one is reported in one line and, with `quarantine` (training), moved aside."""
        for s in reversed(self.all_steps()):
            if step is not None and s > step:
                continue
            try:
                return s, self.restore(s, abstract_state)
            except CheckpointError as e:
                moved = self.quarantine(s) if quarantine else None
                report(f"skipping damaged checkpoint: {e}" + (f"; moved to {moved}" if moved else ""))
        return None, None

    def quarantine(self, step: int) -> str | None:
        """Moves the folder of `step` to damaged_checkpoints/ beside the checkpoint folder (kept for
        inspection, never deleted) so that the step can be written again; returns its new path."""
        target = None
        if jax.process_index() == 0:
            source = os.path.join(self.directory, str(step))
            target = os.path.join(os.path.dirname(self.directory), "damaged_checkpoints",
                                  f"{step}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
            try:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.move(source, target)
            except OSError as e:
                raise CheckpointError(f"cannot move damaged checkpoint {source} aside: {_reason(e)}; "
                                      f"delete it by hand") from e
        ocp.multihost.sync_global_processes("gan_jax_quarantine")
        self.manager.reload()
        return target

    def cleanup_partial(self) -> list[str]:
        """Deletes the folders of saves that never completed (`STEP.orbax-checkpoint-tmp-*`, left by
        kill -9 or a full disk) and returns their names. Only training calls this: a sampling process
        must not delete the save that a training process is writing."""
        removed = []
        if jax.process_index() == 0:
            for path in sorted(glob.glob(os.path.join(glob.escape(self.directory), f"*{TMP_SUFFIX}*"))):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(os.path.basename(path))
        ocp.multihost.sync_global_processes("gan_jax_cleanup_partial")
        self.manager.reload()
        return removed

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.manager.close()


def abstract_like(state, shardings):
    """ShapeDtypeStructs of `state` placed on `shardings`: the restore target."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=s), state, shardings)
