"""One training run per workdir: an exclusive flock on the workdir folder itself, held for the whole run.

The folder, not a file in it: a user may delete WORKDIR/.lock by hand (a killed run leaves no stale
lock, so the file looks like litter), and a lock on a deleted file no longer keeps a second run
out. The kernel drops an flock when its process dies, however it dies, so a killed run never leaves
a stale lock. The holder writes its pid, host and start time into WORKDIR/.lock for the refusal
message. Where the filesystem cannot flock a folder (some network filesystems), the lock falls
back to an flock on WORKDIR/.lock."""

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
        fd = self._open(self.workdir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._busy() from None
        except OSError:  # no flock on folders here: the file lock
            os.close(fd)
            fd = self._lock_file()
        self._fd = fd
        self._write_holder()
        return self

    def _open(self, path: str, flags: int) -> int:
        try:
            return os.open(path, flags, 0o644)
        except OSError as e:
            raise UserError(f"--workdir={self.workdir!r} is not writable: {e.strerror or e}") from e

    def _lock_file(self) -> int:
        fd = self._open(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._busy() from None
        return fd

    def _write_holder(self) -> None:
        """(Re)writes WORKDIR/.lock, created again if it was deleted."""
        fd = self._open(self.path, os.O_WRONLY | os.O_CREAT)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, started "
                         f"{time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        finally:
            os.close(fd)

    def _busy(self) -> WorkdirBusy:
        return WorkdirBusy(f"--workdir={self.workdir!r} is in use by a training run ({self._holder()}); wait for "
                           "it to end or stop it (SIGTERM saves and exits), or use another workdir")

    def _holder(self) -> str:
        """Who holds the lock: WORKDIR/.lock's note, or, if it was deleted, the pid the kernel names."""
        try:
            with open(self.path, errors="replace") as f:
                note = f.read(200).strip()
            if note:
                return note
        except OSError:
            pass
        pid = _flock_holder(self.workdir)
        return f"pid {pid} on {socket.gethostname()}; {LOCK_NAME} was deleted" if pid else "another process"

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; .lock stays, so no unlink race
            self._fd = None


def _flock_holder(path: str) -> int | None:
    """The pid holding an flock on `path` according to Linux's /proc/locks, or None."""
    try:
        st = os.stat(path)
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in lines:
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == inode:
            return int(fields[4])
    return None
