"""SIGTERM/SIGINT/SIGHUP for a training run, from the moment launch.py starts to its exit.

The first signal sets a flag: during start-up the run stops before training (nothing to save, or the
restored state untouched); during training the current call finishes, a checkpoint is written and the
run exits 0. A second signal only says that this is still happening, because preemption systems and
impatient users often send two; a third aborts at once (exit 130), keeping the checkpoints already on
disk (an unfinished save is never taken for a good one and is removed on the next start). SIGHUP is
what a run started from a terminal or an SSH session gets when that closes: a stop like the others."""

import contextlib
import os
import signal
import sys
import threading

# SIGHUP where the platform has it (not on Windows).
SIGNALS = (signal.SIGTERM, signal.SIGINT) + ((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ())
ABORT_AFTER = 3  # the signal count that aborts without saving


class StoppedBeforeTraining(Exception):
    """A stop was requested before the first training step: nothing was trained or saved."""


class StopRequest:
    """The process's stop flag; `install()` replaces the handlers of SIGNALS until `uninstall()`."""

    def __init__(self):
        self.signal: str | None = None
        self.count = 0
        self.phase = "starting"  # what the run is doing, named in the messages
        self.newest_checkpoint: int | None = None
        self._previous: dict = {}

    def install(self) -> "StopRequest":
        if threading.current_thread() is not threading.main_thread():
            return self  # Python delivers signals to the main thread only; its handlers stay
        for s in SIGNALS:
            self._previous[s] = signal.signal(s, self._handle)
        return self

    def uninstall(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    @property
    def installed(self) -> bool:
        return bool(self._previous)

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        self.count += 1
        # os.write, not print: a handler may interrupt a print on the same stream.
        if self.count == 1:
            self.signal = name
            _say(f"{name}: stopping cleanly ({self.phase}); send it twice more to abort without saving")
        elif self.count < ABORT_AFTER:
            _say(f"{name} again: still stopping cleanly ({self.phase}); one more aborts without saving")
        else:
            kept = (f"checkpoint {self.newest_checkpoint} is the newest kept" if self.newest_checkpoint is not None
                    else "no checkpoint was written by this run")
            _say(f"{name} a third time: aborted without saving; {kept}")
            os._exit(128 + signum)

    def check(self) -> None:
        """Raises StoppedBeforeTraining if a stop was requested (call it between start-up phases)."""
        if self.signal is not None:
            raise StoppedBeforeTraining(f"{self.signal} during start-up ({self.phase}): stopped before training; "
                                        "nothing was trained, the workdir's checkpoints are untouched")


class Interrupted(KeyboardInterrupt):
    """A signal during work that `raise_on_signals` made interruptible (launch.py --mode=sample/eval).
    A KeyboardInterrupt, so that `except Exception` on the way does not swallow it."""

    def __init__(self, signum: int):
        self.signum = int(signum)
        self.name = signal.Signals(signum).name
        super().__init__(self.name)


_finishing: str | None = None  # the output being moved into place, after which a signal stops nothing
_pending: int | None = None  # a signal whose Interrupted may have been raised where Python drops it


def raise_on_signals() -> None:
    """From here on each of SIGNALS raises Interrupted in the main thread, for work whose output is built
    under a temporary name and renamed at its end: the exception unwinds through the writer, which
    removes its temporary file, so an interrupted run leaves nothing behind. Until `finishing()`.

    Python drops an exception raised in a garbage-collection callback or a __del__ (the signal's
    handler runs wherever the main thread is): such a signal stays pending, `check_interrupted()`
    raises it at the next chunk, and `finishing()` at the latest; the dropped one prints nothing."""
    global _finishing, _pending
    _finishing, _pending = None, None
    for s in SIGNALS:
        signal.signal(s, _raise_interrupted)
    previous = sys.unraisablehook
    if not getattr(previous, "_gan_jax_interrupted", False):
        def hook(args, previous=previous):
            if not isinstance(args.exc_value, Interrupted):
                previous(args)

        hook._gan_jax_interrupted = True
        sys.unraisablehook = hook


def check_interrupted() -> None:
    """Raises Interrupted if a signal arrived under raise_on_signals and was dropped on the way."""
    if _pending is not None and _finishing is None:
        raise Interrupted(_pending)


def finishing(output: str) -> None:
    """Says that the work is done and `output` (a file name) is about to be moved into place: a signal
    from here on is only acknowledged, so that the process never stops between the rename and saying
    what it wrote (which would make 'nothing was written' untrue). A signal that arrived before and was
    dropped raises Interrupted now. A no-op without raise_on_signals."""
    global _finishing
    check_interrupted()
    _finishing = output


def _raise_interrupted(signum, frame) -> None:
    global _pending
    if _finishing is not None:
        _say(f"{signal.Signals(signum).name}: the work is done and {_finishing} is being written; finishing")
        return
    _pending = signum
    raise Interrupted(signum)


def _say(text: str) -> None:
    os.write(2, ("\n" + text + "\n").encode())


_current: StopRequest | None = None


def install() -> StopRequest:
    """Installs the process's handlers (launch.py calls this first thing) and returns the request."""
    global _current
    if _current is None:
        _current = StopRequest()
    if not _current.installed:
        _current.install()
    return _current


@contextlib.contextmanager
def stop_request():
    """The installed StopRequest, or one installed for the duration of the block (in-process callers)."""
    global _current
    owned = _current is None or not _current.installed
    request = install()
    try:
        yield request
    finally:
        if owned:
            request.uninstall()
            _current = None
