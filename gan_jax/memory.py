"""Does a compiled step fit? Checked before anything is written, so that a model too large for the
machine is refused with one line instead of an out-of-memory crash after the workdir exists."""

import os

import jax

from gan_jax.errors import ConfigError

GiB = 2**30


class InsufficientMemory(ConfigError):
    """The run's state and step temporaries exceed the memory of the devices."""


def available_bytes() -> tuple[int | None, str]:
    """Memory one local device can use and what it is: the accelerator's limit, or on the CPU the
    host's available memory shared by its local devices. (None, ...) when unknown."""
    device = jax.local_devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), f"{device.device_kind} memory"
    total = host_available_bytes()
    if total is None:
        return None, "unknown"
    return total // jax.local_device_count(), f"available host memory / {jax.local_device_count()} devices"


def host_available_bytes() -> int | None:
    """The host's available memory in bytes (MemAvailable: free plus reclaimable caches; without
    /proc/meminfo the physical memory), None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        return info.get("MemAvailable", info.get("MemTotal"))
    except (OSError, ValueError, IndexError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None


def needed_bytes(compiled) -> int | None:
    """Peak bytes per device of a compiled step: arguments, outputs not aliased to them, temporaries."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # not every backend or jax version reports it
        return None
    if m is None:
        return None
    return int(m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes)


def state_bytes(abstract_state) -> int:
    """Bytes of a (replicated) state: the sum of its arrays' sizes."""
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(abstract_state))


def check_fits(compiled, abstract_state, what: str = "the training step") -> None:
    """Raises InsufficientMemory naming the largest array when `compiled` needs more than a device
    has. Without a compiled step (pmap compiles at the first call), counts the state three times
    (state, gradients, updates): a lower bound that still catches a model far too large."""
    needed = needed_bytes(compiled) if compiled is not None else 3 * state_bytes(abstract_state)
    available, kind = available_bytes()
    if needed is None or available is None or needed <= available:
        return
    path, leaf = max(jax.tree_util.tree_flatten_with_path(abstract_state)[0], key=lambda pl: pl[1].size)
    name = jax.tree_util.keystr(path)
    raise InsufficientMemory(f"{what} needs {needed / GiB:,.1f} GiB per device but {available / GiB:,.1f} GiB are "
                             f"free ({kind}); the largest array is {name} {tuple(leaf.shape)}: make the model "
                             "(model.latent_dim, widths) or data.batch_size smaller")
