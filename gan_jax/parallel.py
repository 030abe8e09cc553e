"""Data parallelism: global-view `jax.jit` over a mesh of all devices (axis 'data'), or `jax.pmap`.

In 'jit' mode batches are sharded along 'data' and the train state is replicated (or, with
`parallel.shard_params`, each array's largest divisible axis is sharded over 'data', FSDP-style);
XLA inserts the collectives, so the step's code is the one-device code. In 'pmap' mode the same
step runs per device on its slice with `axis_name='batch'` (gradients averaged with lax.pmean)."""

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from gan_jax.errors import ConfigError

DATA_AXIS = "data"
PMAP_AXIS = "batch"


def make_mesh() -> jax.sharding.Mesh:
    # Auto axes: XLA propagates shardings through the step, so the step's code is the one-device code.
    return jax.make_mesh((jax.device_count(),), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def check_batch(global_batch_size: int) -> None:
    devices, processes = jax.device_count(), jax.process_count()
    if global_batch_size % devices:
        raise ConfigError(f"data.batch_size={global_batch_size} is not divisible by the number of devices "
                          f"({devices}); use a multiple of {devices}")
    if global_batch_size % processes:
        raise ConfigError(f"data.batch_size={global_batch_size} is not divisible by the number of processes "
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
    """Assembles the global array from this process's slice along `batch_axis`."""
    shape = list(local.shape)
    shape[batch_axis] *= jax.process_count()
    return jax.make_array_from_process_local_data(sharding, local, tuple(shape))


def pmap_split(local: np.ndarray, batch_axis: int) -> np.ndarray:
    """(…, B_local, …) -> (local_devices, …, B_local / local_devices, …) for pmap."""
    d = jax.local_device_count()
    shape = local.shape
    x = local.reshape(*shape[:batch_axis], d, shape[batch_axis] // d, *shape[batch_axis + 1:])
    return np.moveaxis(x, batch_axis, 0)
