"""Multi-host start-up on JAX's own multi-controller runtime (jax.distributed)."""

import os

import jax

from gan_jax.errors import UserError


def detected_cluster() -> bool:
    """True under a multi-task SLURM job or on a multi-host TPU slice, where JAX finds its peers itself."""
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return True
    return "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")


def maybe_initialize(multihost: bool | None, coordinator_address: str | None = None,
                     num_processes: int | None = None, process_id: int | None = None,
                     timeout_seconds: int = 300) -> None:
    """Calls jax.distributed.initialize when asked or when a cluster is detected; must run before any
    other JAX call. A process that cannot reach the coordinator fails within `timeout_seconds`."""
    if multihost is None:
        multihost = coordinator_address is not None or detected_cluster()
    if not multihost:
        return
    # Only used by the CPU backend (tests, CPU clusters); accelerators use their own collectives.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                                   process_id=process_id, initialization_timeout=timeout_seconds)
    except Exception as e:  # XLA raises RuntimeError/XlaRuntimeError subclasses with long texts
        raise UserError(f"jax.distributed.initialize(coordinator_address={coordinator_address!r}, "
                        f"num_processes={num_processes}, process_id={process_id}) failed within "
                        f"{timeout_seconds} s: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
