"""Spectral normalization (Miyato et al. 2018) of any network's parameters, outside the model: every
kernel (a parameter with ndim >= 2, read as a matrix (prod(shape[:-1]), shape[-1]) as flax and PyTorch
do) is divided by an estimate of its largest singular value. The estimate comes from power iteration
on a vector u per kernel, kept in the train state and advanced one iteration per D update; as in the
paper, u and v are constants for the gradient, which flows through W / sigma(W).

Applied to the parameters rather than inside the modules, it serves every discriminator unchanged."""

import jax
import jax.numpy as jnp

EPS = 1e-12


def _is_kernel(w: jax.Array) -> bool:
    return w.ndim >= 2


def _matrix(w: jax.Array) -> jax.Array:
    return w.reshape(-1, w.shape[-1])


def _unit(x: jax.Array) -> jax.Array:
    return x / (jnp.linalg.norm(x) + EPS)


def init_vectors(params, key: jax.Array):
    """u per kernel: a random unit vector of the kernel's output size; for other parameters a 0-d
    placeholder that keeps the params' tree structure (0-d, not empty: checkpoints cannot hold empty arrays)."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, max(len(leaves), 1))
    return jax.tree.unflatten(treedef, [
        _unit(jax.random.normal(k, (w.shape[-1],))) if _is_kernel(w) else jnp.zeros((), w.dtype)
        for k, w in zip(keys, leaves, strict=False)])


def power_iteration(params, vectors):
    """One power-iteration step per kernel: u <- W^T W u / |.|, as constants (no gradient)."""
    def step(w, u):
        if not _is_kernel(w):
            return u
        m = jax.lax.stop_gradient(_matrix(w))
        return _unit(m.T @ _unit(m @ u))

    return jax.tree.map(step, params, vectors)


def sigma(w: jax.Array, u: jax.Array) -> jax.Array:
    """The estimate v^T W u of W's largest singular value, v = W u / |W u|; u and v are constants."""
    m = _matrix(w)
    u = jax.lax.stop_gradient(u)
    v = jax.lax.stop_gradient(_unit(m @ u))
    return v @ m @ u


def normalize(params, vectors):
    """params with every kernel divided by sigma(kernel, its u)."""
    return jax.tree.map(lambda w, u: w / sigma(w, u) if _is_kernel(w) else w, params, vectors)
