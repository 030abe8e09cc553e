"""The objective's update compiled over the device mesh: `length` updates a call, the state donated, the
hyperparameters as arrays (one compilation whatever their values), and the global batches it reads, for
the training loop (training.py; run_loop.py and vectorized.py read `train_arrays`)."""

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from gan_jax import memory, parallel
from gan_jax.experiment import Experiment


def train_arrays(exp: Experiment):
    """What the input pipeline serves: the images, or (images, labels)."""
    return exp.images if exp.labels is None else (exp.images, exp.labels)


def global_batch(exp: Experiment, local, shardings_of_batch):
    """This process's batches of a call -> the step's input: split over the local devices (pmap) or
    one global array over the mesh."""
    if local is None:
        return None
    if exp.pmap:
        return jax.tree.map(lambda a: parallel.pmap_split(a, batch_axis=2), local)
    return jax.tree.map(lambda a, sharding: parallel.global_batch_array(a, sharding, batch_axis=2), local,
                        shardings_of_batch)


def _multi_step(exp: Experiment, length: int | None):
    def multi_step(state, batches, hp):  # named: tests count "Compiling jit(multi_step)" in the log
        return exp.builder.multi_step(state, batches, hp, length)

    return multi_step


def compile_step(exp: Experiment, state_shardings, length: int | None = None):
    """The jitted (or pmapped) multi-step of `length` updates (default train.steps_per_call):
    (state, batches) -> (state, stacked metrics); state donated. The objective's hyperparameters go in
    as arrays (one compilation whatever their values). Under pmap the metrics come back as the first
    local device's copy, (1, K), so that every process can read them (the full (devices, K) output
    spans other processes' devices)."""
    multi_step = _multi_step(exp, length)
    if exp.pmap:
        hp = exp.builder.hyperparameters()
        pmapped = jax.pmap(multi_step, axis_name=parallel.PMAP_AXIS, in_axes=(0, 0, None), donate_argnums=0)

        def step(state, batches):
            state, metrics = pmapped(state, batches, hp)
            return state, parallel.pmap_local(metrics)

        return parallel.one_execution_at_a_time(step)
    jitted, hp = jit_step(exp, state_shardings, multi_step)
    return parallel.one_execution_at_a_time(lambda state, batches: jitted(state, batches, hp))


def jit_step(exp: Experiment, state_shardings, multi_step):
    """The jitted (state, batches, hp) step and the hyperparameters, replicated over the mesh."""
    in_shardings = (state_shardings, batch_shardings(exp), parallel.replicated(exp.mesh))
    jitted = jax.jit(multi_step, in_shardings=in_shardings,
                     out_shardings=(state_shardings, NamedSharding(exp.mesh, P())), donate_argnums=0)
    return jitted, parallel.host_replicated(exp.builder.hyperparameters(), exp.mesh)


def batch_shardings(exp: Experiment):
    """The shardings of a call's batch (None for synthetic data): images (K, n_critic, B, *example),
    and labels (K, n_critic, B) for objectives that train on them, split over the batch axis."""
    if exp.images is None:
        return None
    images = parallel.batch_sharding(exp.mesh, 3 + len(exp.example_shape), batch_axis=2)
    return images if exp.labels is None else (images, parallel.batch_sharding(exp.mesh, 3, batch_axis=2))


def compile_and_check_memory(exp: Experiment, state_shardings):
    """The step of train.steps_per_call updates, compiled ahead of time and refused with
    InsufficientMemory if it does not fit on a device (pmap: compiled at the first call, so only
    its state is checked)."""
    if exp.pmap:
        memory.check_fits(None, jax.eval_shape(exp.builder.init_state, exp.seed))
        return compile_step(exp, state_shardings)
    cfg = exp.cfg
    batch = None
    if exp.images is not None:
        leading = (cfg.train.steps_per_call, cfg.train.n_critic, cfg.data.batch_size)
        arrays = train_arrays(exp)
        batch = jax.tree.map(lambda a, sharding: jax.ShapeDtypeStruct((*leading, *a.shape[1:]), a.dtype,
                                                                      sharding=sharding),
                             arrays, batch_shardings(exp))
    abstract = exp.abstract_state()
    jitted, hp = jit_step(exp, state_shardings, _multi_step(exp, None))
    compiled = jitted.lower(abstract, batch, hp).compile()
    memory.check_fits(compiled, abstract)
    return parallel.one_execution_at_a_time(lambda state, batches: compiled(state, batches, hp))
