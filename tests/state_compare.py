"""Comparing two runs' train states on what a bug would move: each one's change from the common initial
state, element by element, over parameters, BatchNorm statistics and optimizer state (Adam's first
moment after one step is (1 - b1) * the device-averaged gradient, so a gradient summed instead of
averaged shows there even where Adam's normalized parameter update hides it)."""

import jax
import numpy as np

# Training runs compared across layouts (device counts, processes, jit vs pmap, resumes on another
# device count) use Adam with eps far above |g| (<= 0.4 in dcgan_mnist's smoke run): its updates are
# then lr / eps * m (an SGD step of 1e-2 with momentum), so a gradient's scale reaches the parameters,
# and near-zero gradients summed in another order stay near zero instead of becoming whole steps
# lr * sign(g). What is left is rounding: another layout reorders the batch reductions, and launch.py's
# subprocesses run XLA's own CPU kernels where pytest's process runs YNNPACK's (gan_jax/cpu_runtime.py).
# Through 10 dcgan_mnist smoke steps (batches of 8, LeakyReLU kinks) that measured up to 3.5e-2 of a
# leaf's largest change (in Adam's first moment: the latest gradients); gradients summed over devices
# instead of averaged measured > 1e3.
PROPORTIONAL_ADAM = {"optimizer.learning_rate": 0.1, "optimizer.eps": 10.0}
LAYOUT_TOLERANCE = 0.1


def state_tree(state) -> dict:
    """{'params', 'batch_stats', 'opt_state'} of a TrainState, on the host."""
    return jax.device_get({"params": state.params, "batch_stats": state.batch_stats, "opt_state": state.opt_state})


def update_difference(a: dict, b: dict, initial: dict) -> tuple[float, str]:
    """(max over leaves of max|(a - initial) - (b - initial)| / scale, the leaf's path): how far a's change
    from `initial` is from b's, element by element. scale: b's largest change in the leaf, or 1e-3 of
    its largest in the network's part of the collection (params/generator, opt_state/generator, ...)
    if that is more, so that a leaf whose gradient is zero up to rounding (a bias before BatchNorm)
    is not measured against its own rounding. A part that b did not change counts 0 if a did not
    change it either, else inf."""
    flat_b, _ = jax.tree_util.tree_flatten_with_path(b)
    flat_a, flat_0 = jax.tree.leaves(a), jax.tree.leaves(initial)
    assert len(flat_a) == len(flat_b) == len(flat_0), (len(flat_a), len(flat_b), len(flat_0))
    rows, part_moved = [], {}
    for (path, y), x, x0 in zip(flat_b, flat_a, flat_0, strict=True):
        x, y, x0 = (np.asarray(v, np.float64) for v in (x, y, x0))
        moved, gap = np.abs(y - x0).max(initial=0.0), np.abs(x - y).max(initial=0.0)
        part = jax.tree_util.keystr(path[:2])
        part_moved[part] = max(part_moved.get(part, 0.0), moved)
        rows.append((jax.tree_util.keystr(path), part, moved, gap))
    worst, where = 0.0, ""
    for name, part, moved, gap in rows:
        scale = max(moved, 1e-3 * part_moved[part])
        diff = gap / scale if scale > 0 else (0.0 if gap == 0 else np.inf)
        if diff > worst or not where:
            worst, where = float(diff), name
    return worst, where


def device_zero(tree):
    """pmap outputs (devices, …) -> device 0's copy (…) on the host, read from its buffer as the library
    reads them (parallel.pmap_local): indexing the 8-device array instead dispatches a gather on it."""
    from gan_jax import parallel

    return jax.tree.map(lambda x: np.asarray(x)[0], parallel.pmap_local(tree))


def bitwise_equal(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def summing_update(self, name: str, params: dict, opt_state: dict, grads, hp: dict) -> None:
    """Steps.update with the gradients summed over devices instead of averaged: the bug that the
    data-parallel tests' controls train with (assign it to a builder or, monkeypatched, to Steps)."""
    from gan_jax.objectives.base import apply_updates

    params[name], opt_state[name] = apply_updates(params[name], opt_state[name], jax.lax.psum(grads, self.axis_name),
                                                  self.optimizers[name], hp[f"lr_{name}"])
