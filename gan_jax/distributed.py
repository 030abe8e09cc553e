"""Multi-host start-up on JAX's own multi-controller runtime (jax.distributed).

One process per host (or per GPU), all running the same command. Process 0 hosts the coordinator;
the others connect to it. CPU processes exchange collectives over gloo (JAX's default on CPU)."""

import os
import socket
import sys
import threading
import time

import jax

from gan_jax.errors import UserError


def detected_cluster() -> bool:
    """True under a multi-task SLURM job or on a multi-host TPU slice, where JAX finds its peers itself."""
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return True
    return "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UserError(f"--coordinator_address={address!r} is not accepted; expected HOST:PORT, e.g. 10.0.0.1:1234")
    return host.strip("[]"), int(port)


def wait_for_coordinator(address: str, timeout_seconds: float) -> None:
    """Returns once something accepts TCP connections at `address` (HOST:PORT); raises UserError after
    `timeout_seconds`. JAX's own client would abort the process (SIGABRT, a C++ stack trace) instead."""
    host, port = _split_address(address)
    deadline, reason = time.monotonic() + timeout_seconds, "no answer"
    while True:
        try:
            with socket.create_connection((host, port), timeout=max(min(deadline - time.monotonic(), 2.0), 0.1)):
                return
        except OSError as e:
            reason = e.strerror or type(e).__name__
        if time.monotonic() >= deadline:
            raise UserError(f"--coordinator_address={address!r} could not be reached within {timeout_seconds:g} s "
                            f"({reason.lower()}); start process 0 there first, or check the address and firewall")
        time.sleep(0.25)


def _watchdog(message: str, seconds: float) -> threading.Timer:
    # jax.distributed.initialize blocks in C++ (with the GIL released) until every process has joined,
    # then aborts the interpreter. A timer that fires first turns that into launch.py's one-line exit 2.
    def fire():
        print(f"error: {message}", file=sys.stderr, flush=True)
        os._exit(2)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    return timer


def maybe_initialize(multihost: bool | None, coordinator_address: str | None = None,
                     num_processes: int | None = None, process_id: int | None = None,
                     timeout_seconds: int = 300) -> None:
    """Calls jax.distributed.initialize when asked (`multihost`, or a `coordinator_address`) or when a
    cluster is detected (SLURM, TPU pod); must run before any other JAX call. Every process fails within
    `timeout_seconds` with one line: UserError if the coordinator cannot be reached, exit status 2 if
    not all `num_processes` processes join."""
    if multihost is None:
        multihost = coordinator_address is not None or detected_cluster()
    if not multihost:
        return
    if timeout_seconds <= 0:
        raise UserError(f"--initialization_timeout={timeout_seconds} must be a positive number of seconds")
    if num_processes is not None and num_processes < 1:
        raise UserError(f"--num_processes={num_processes} must be >= 1")
    if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
        raise UserError(f"--process_id={process_id} is not accepted; expected 0 to {num_processes - 1} "
                        f"(--num_processes={num_processes})")
    start = time.monotonic()
    if coordinator_address is not None and process_id not in (None, 0):
        wait_for_coordinator(coordinator_address, timeout_seconds)
    remaining = max(timeout_seconds - (time.monotonic() - start), 1.0)
    where = coordinator_address or "the detected coordinator"
    timer = _watchdog(f"not all {num_processes or 'the'} processes joined the coordinator at {where} within "
                      f"{timeout_seconds} s (this is process_id={process_id}); start every process with the same "
                      f"--coordinator_address and --num_processes, or raise --initialization_timeout", remaining)
    try:
        # JAX's own deadline is later, so that the watchdog's message is the one shown.
        jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                                   process_id=process_id, initialization_timeout=int(remaining) + 30)
    except Exception as e:  # bad addresses and cluster detection raise ValueError/RuntimeError with long texts
        raise UserError(f"jax.distributed.initialize(coordinator_address={coordinator_address!r}, "
                        f"num_processes={num_processes}, process_id={process_id}) failed: "
                        f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    finally:
        timer.cancel()
