"""A full disk during training: every write of a run (checkpoints, metrics.jsonl, TensorBoard events,
sample grids, curves.png) that fails with ENOSPC raises DiskFull naming what it was writing, and
training turns that into one line saying which checkpoint is the newest kept (README, "What happens
when..."). And the one way a file is written atomically (`replacing`, `write_text`): a kill or a
full disk in the middle leaves the target as it was, never half a file."""

import contextlib
import errno
import itertools
import os
import re
import threading
from collections.abc import Iterator

from gan_jax.errors import UserError

# tensorstore (under orbax) reports the OS error inside its status text, not as an OSError.
_TENSORSTORE_ENOSPC = re.compile(rf"os_error_code='{errno.ENOSPC}'")


class DiskFull(UserError):
    """The disk filled up while the run wrote `what` (e.g. 'writing metrics.jsonl in DIR')."""

    def __init__(self, what: str):
        self.what = what
        super().__init__(f"no space left on device while {what}")


def _chain(e: BaseException | None):
    seen = []
    while e is not None and e not in seen:
        seen.append(e)
        yield e
        e = e.__cause__ or e.__context__


def is_disk_full(e: BaseException | None) -> bool:
    """Whether `e`, or an exception it was raised from or during, is ENOSPC (from Python or tensorstore)."""
    return any((isinstance(x, OSError) and x.errno == errno.ENOSPC) or bool(_TENSORSTORE_ENOSPC.search(str(x)))
               for x in _chain(e))


@contextlib.contextmanager
def writing(what: str):
    """`with writing('writing X in DIR'):` turns ENOSPC inside the block into DiskFull(what); any other
    error passes unchanged, so real bugs keep their tracebacks."""
    try:
        yield
    except DiskFull:
        raise
    except Exception as e:
        if not is_disk_full(e):
            raise
        raise DiskFull(what) from e


_temporary_names = itertools.count()  # with the pid: a temporary name no other writer (process, thread) uses


@contextlib.contextmanager
def replacing(path: str | os.PathLike, suffix: str = "") -> Iterator[str]:
    """`with replacing(path) as tmp:` write the whole file at `tmp` (beside `path`, unique to this
    process and call, ending in `suffix` for writers that choose the format by extension: '.png',
    '.npz'). On a clean exit the file is synced and moved onto `path` (os.replace: a reader sees the
    old file or the new one); on any error (ENOSPC, a signal) it is removed and `path` is as it was.
    The error passes unchanged, so `writing` and `is_disk_full` still see a full disk."""
    path = os.fspath(path)
    tmp = f"{path}.tmp.{os.getpid()}.{next(_temporary_names)}{suffix}"
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())  # else a crash just after the rename can leave an empty `path`
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> str:
    """Writes `text` (UTF-8) to `path` atomically (`replacing`); returns the path."""
    with replacing(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    return os.fspath(path)


class StoppedOnFullDisk(UserError):
    """A training run stopped by a full disk; the message says what is kept and what to do."""

    def __init__(self, error: DiskFull, newest_checkpoint: int | None | dict[str, int | None]):
        """newest_checkpoint: the run's newest kept step, or {run name: its newest} for a sweep's runs."""
        if isinstance(newest_checkpoint, dict):
            kept = "the newest checkpoints kept: " + ", ".join(
                f"{name} {'none' if step is None else step}" for name, step in newest_checkpoint.items())
        elif newest_checkpoint is not None:
            kept = f"checkpoint {newest_checkpoint} is the newest kept"
        else:
            kept = "no checkpoint is kept, the run will start from step 0"
        super().__init__(f"{error}: {kept}; free space and run the same command to resume")


def quiet_event_threads() -> None:
    """tensorboardX writes events in a thread of its own, which dies with a traceback on a full disk;
    the writer's next flush in the main thread raises the same ENOSPC (the events stay in the file's
    buffer), and that becomes the run's one line. Drops exactly those thread tracebacks (idempotent)."""
    previous = threading.excepthook
    if getattr(previous, "_gan_jax_quiet", False):
        return

    def hook(args, previous=previous):
        if type(args.thread).__module__.startswith("tensorboardX") and is_disk_full(args.exc_value):
            return
        previous(args)

    hook._gan_jax_quiet = True
    threading.excepthook = hook
