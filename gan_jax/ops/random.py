"""`jax.random.uniform` and `jax.random.bernoulli` (float32, threefry keys), bit for bit, with a
lowering that XLA:CPU fuses.

JAX lowers threefry2x32 on the CPU as a rolled loop (for compile time) whose every round is a pass
over the whole array in memory, which makes the dropout masks of the tutorial DCGAN's discriminator
a large share of its step (README, Performance). Written out round by round, as JAX does on the
other backends, the hash is one elementwise fusion. Same keys, same counters, same bits: the
tests compare against `jax.random` bit for bit. Off the CPU, `jax.random` itself is called.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _rotate_left(x: jax.Array, d: int) -> jax.Array:
    return (x << np.uint32(d)) | (x >> np.uint32(32 - d))


def threefry2x32(k1: jax.Array, k2: jax.Array, x1: jax.Array, x2: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32 with 20 rounds (Salmon et al. 2011), as `jax.random`: uint32 arrays that broadcast."""
    ks = (k1, k2, k1 ^ k2 ^ np.uint32(0x1BD11BDA))
    x1, x2 = x1 + ks[0], x2 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x1 = x1 + x2
            x2 = x1 ^ _rotate_left(x2, r)
        x1 = x1 + ks[(i + 1) % 3]
        x2 = x2 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x1, x2


def _key_words(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return data[..., 0], data[..., 1]


def _bits32(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """jax.random.bits(key, shape) for threefry keys (partitionable counters: the flat index)."""
    size = math.prod(shape)
    if size >= 2**32:
        raise ValueError(f"{size} random numbers in one call; at most 2**32 - 1")
    k1, k2 = _key_words(key)
    counters = jax.lax.iota(np.uint32, size).reshape(shape)
    b1, b2 = threefry2x32(k1, k2, jnp.zeros_like(counters), counters)
    # Materialized: fused into a consumer such as a convolution's patch gather, the hash would be
    # recomputed for every tap.
    return jax.lax.optimization_barrier(b1 ^ b2)


def _fused_path(key: jax.Array) -> bool:
    if jax.default_backend() != "cpu" or not jax.config.jax_threefry_partitionable:
        return False
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key.dtype == jnp.uint32 and key.shape[-1:] == (2,)  # a raw threefry key (jax.random.PRNGKey)
    return "threefry2x32" in str(jax.random.key_impl(key))


def uniform(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """float32 uniform in [0, 1) of `shape`: `jax.random.uniform(key, shape)`, bit for bit."""
    if not _fused_path(key):
        return jax.random.uniform(key, shape, jnp.float32)
    mantissa = (_bits32(key, shape) >> np.uint32(9)) | np.uint32(0x3F800000)
    return jax.lax.bitcast_convert_type(mantissa, jnp.float32) - np.float32(1.0)


def bernoulli(key: jax.Array, p: float, shape: tuple[int, ...]) -> jax.Array:
    """bool mask of `shape`, True with probability p: `jax.random.bernoulli(key, p, shape)`, bit for bit."""
    if not _fused_path(key):
        return jax.random.bernoulli(key, p, shape)
    # uniform < p  <=>  mantissa * 2**-23 < float32(p): an integer comparison, exact.
    threshold = math.ceil(float(np.float32(p)) * 2**23)
    return (_bits32(key, shape) >> np.uint32(9)) < np.uint32(threshold)
