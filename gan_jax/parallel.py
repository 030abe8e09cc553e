"""Data parallelism: global-view `jax.jit` over a mesh of all devices (axis 'data'), or `jax.pmap`.

In 'jit' mode batches are sharded along 'data' and the train state is replicated (or, with
`parallel.shard_params`, each array's largest divisible axis is sharded over 'data', FSDP-style);
XLA inserts the collectives, so the step's code is the one-device code. In 'pmap' mode the same
step runs per device on its slice with `axis_name='batch'` (gradients averaged with lax.pmean)."""

import functools
from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from gan_jax.errors import ConfigError

DATA_AXIS = "data"
PMAP_AXIS = "batch"


def make_mesh() -> jax.sharding.Mesh:
    """A 1-D mesh of every device of every process, axis 'data'; each process's devices are contiguous
    and in process order, so that process p's slice of the global batch (data/pipeline.py) is rows
    [p * B / P, (p + 1) * B / P) of the global array."""
    # Auto axes: XLA propagates shardings through the step, so the step's code is the one-device code.
    auto = (jax.sharding.AxisType.Auto,)
    mesh = jax.make_mesh((jax.device_count(),), (DATA_AXIS,), axis_types=auto)
    order = [d.process_index for d in mesh.devices.flat]
    if order != sorted(order):
        devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
        mesh = jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=auto, devices=devices)
    return mesh


def one_execution_at_a_time(fn: Callable) -> Callable:
    """`fn` (a compiled multi-device step), made to wait for its outputs on each call where the backend
    is the CPU with several local devices; elsewhere `fn` itself, its dispatch asynchronous.

    Why: XLA:CPU (jaxlib 0.10) runs the devices of a program as tasks on one pool with as many threads
    as devices; when the next call's execution starts before the last one ends, some devices' tasks wait
    in a collective's rendezvous while the rest cannot get a thread, and 40 s later XLA aborts the
    process ("Termination timeout ... only 5 of them arrived"). tests/test_parallel_cpu.py reproduces
    it without this wait. On the CPU the wait costs little: the devices' tasks share its cores anyway."""
    if jax.default_backend() != "cpu" or jax.local_device_count() == 1:
        return fn

    @functools.wraps(fn)
    def waited(*args, **kwargs):
        return jax.block_until_ready(fn(*args, **kwargs))

    return waited


def check_batch(global_batch_size: int, field: str = "data.batch_size") -> None:
    """Refuses a global batch that the devices (or processes) cannot split evenly, naming both numbers
    and the config `field` that sets it."""
    devices, processes = jax.device_count(), jax.process_count()
    if global_batch_size % devices:
        raise ConfigError(f"{field}={global_batch_size} is not divisible by the number of devices "
                          f"({devices}); use a multiple of {devices}")
    if global_batch_size % processes:
        raise ConfigError(f"{field}={global_batch_size} is not divisible by the number of processes "
                          f"({processes})")


def batch_sharding(mesh: jax.sharding.Mesh, ndim: int, batch_axis: int) -> NamedSharding:
    spec = [None] * ndim
    spec[batch_axis] = DATA_AXIS
    return NamedSharding(mesh, P(*spec))


def state_shardings(mesh: jax.sharding.Mesh, abstract_state, shard_params: bool):
    """Replicated, or FSDP-style: each array of >= 2**14 elements split over 'data' along its largest
    axis that the device count divides."""
    n = mesh.shape[DATA_AXIS]

    def one(x):
        shape = getattr(x, "shape", ())
        if not shard_params or n == 1 or int(np.prod(shape, dtype=np.int64)) < 2**14:
            return NamedSharding(mesh, P())
        for axis in np.argsort(shape)[::-1]:
            if shape[axis] % n == 0:
                spec = [None] * len(shape)
                spec[axis] = DATA_AXIS
                return NamedSharding(mesh, P(*spec))
        return NamedSharding(mesh, P())

    return jax.tree.map(one, abstract_state)


def global_batch_array(local: np.ndarray, sharding: NamedSharding, batch_axis: int) -> jax.Array:
    """Assembles the global array from this process's slice along `batch_axis`: (…, B / P, …) on
    each of the P processes -> one (…, B, …) array sharded as `sharding` says."""
    shape = list(local.shape)
    shape[batch_axis] *= jax.process_count()
    return jax.make_array_from_process_local_data(sharding, local, tuple(shape))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def host_replicated(tree, mesh: jax.sharding.Mesh):
    """Host values that every process holds identically -> arrays replicated over `mesh`. Unlike
    device_put, this also works when the mesh spans other processes' devices."""
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(replicated(mesh), np.asarray(x)), tree)


# --- pmap ----------------------------------------------------------------------------------------
def pmap_split(local: np.ndarray, batch_axis: int) -> np.ndarray:
    """(…, B_local, …) -> (local_devices, …, B_local / local_devices, …) for pmap."""
    d = jax.local_device_count()
    shape = local.shape
    x = local.reshape(*shape[:batch_axis], d, shape[batch_axis] // d, *shape[batch_axis + 1:])
    return np.moveaxis(x, batch_axis, 0)


def pmap_sharding() -> NamedSharding:
    """The layout of pmap's inputs and outputs since pmap is built on shard_map: the leading axis
    over every device."""
    return NamedSharding(jax.sharding.Mesh(np.array(jax.devices()), (PMAP_AXIS,)), P(PMAP_AXIS))


def pmap_replicate(tree):
    """A state replicated over the mesh (or on host) -> one copy per device, leading axis (devices,),
    laid out as pmap returns it, so that the first call does not compile a second program for other
    input shardings (jax.device_put_replicated is gone from JAX)."""
    sharding, n = pmap_sharding(), jax.local_device_count()

    def one(x):
        local = np.broadcast_to(np.asarray(_local_value(x)), (n, *np.shape(x)))
        return jax.make_array_from_process_local_data(sharding, local, (jax.device_count(), *np.shape(x)))

    return jax.tree.map(one, tree)


def pmap_unreplicate(tree, mesh: jax.sharding.Mesh):
    """pmap outputs (devices, …), equal on every device -> arrays replicated over `mesh`, the layout
    of 'jit' mode, which checkpoints, sampling and evaluation take in both modes."""
    return host_replicated(jax.tree.map(lambda x: np.asarray(x.addressable_data(0))[0], tree), mesh)


def pmap_local(tree):
    """pmap outputs (devices, …) -> this process's first device's copy, still (1, …): readable on every
    process without a collective (outputs of pmean are equal on all devices)."""
    return jax.tree.map(lambda x: x.addressable_data(0), tree)


def _local_value(x):
    # Replicated arrays over a multi-process mesh are read from a local shard.
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return x.addressable_data(0)
    return x
