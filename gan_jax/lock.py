"""One training run per workdir: an exclusive flock on WORKDIR/.lock, held for the whole run.

The kernel drops an flock when its process dies, however it dies, so a killed run never leaves a
stale lock. The holder writes its pid and start time into the file for the refusal message."""

import fcntl
import os
import socket
import time

from gan_jax.errors import UserError

LOCK_NAME = ".lock"


class WorkdirBusy(UserError):
    """Another process is training in this workdir."""


class WorkdirLock:
    """`with WorkdirLock(workdir):` raises WorkdirBusy at once if another process holds it."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.path = os.path.join(workdir, LOCK_NAME)
        self._fd: int | None = None

    def __enter__(self) -> "WorkdirLock":
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UserError(f"--workdir={self.workdir!r} is not writable: {e.strerror or e}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise WorkdirBusy(f"--workdir={self.workdir!r} is in use by a training run ({holder}); wait for it "
                              "to end or stop it (SIGTERM saves and exits), or use another workdir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}"
                 .encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays, so no unlink race
            self._fd = None
