"""gan_jax.ops.random: the fused threefry path gives jax.random's bits exactly (a second code path),
for raw and typed keys, under vmap and jit, and inside a sharded jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.ops import random


@pytest.mark.parametrize("shape", [(5,), (3, 14, 14, 64), (1001,)])
@pytest.mark.parametrize("seed", [0, 1, 123456789])
def test_uniform_and_bernoulli_equal_jax_random_bitwise(shape, seed):
    key = jax.random.fold_in(jax.random.PRNGKey(seed), 7)
    np.testing.assert_array_equal(jax.jit(lambda k: random.uniform(k, shape))(key), jax.random.uniform(key, shape))
    for p in (0.7, 0.3, 0.5, 1e-3, 1.0 - 1e-7, 1.0, 0.0):
        np.testing.assert_array_equal(jax.jit(lambda k, p=p: random.bernoulli(k, p, shape))(key),
                                      jax.random.bernoulli(key, p, shape))


def test_typed_keys_and_per_example_vmap():
    key = jax.random.key(3)
    np.testing.assert_array_equal(random.uniform(key, (9, 2)), jax.random.uniform(key, (9, 2)))
    raw = jax.random.PRNGKey(1)
    ids = jnp.arange(16)
    ours = jax.jit(jax.vmap(lambda i: random.bernoulli(jax.random.fold_in(raw, i), 0.7, (7, 7, 3))))(ids)
    ref = jax.vmap(lambda i: jax.random.bernoulli(jax.random.fold_in(raw, i), 0.7, (7, 7, 3)))(ids)
    np.testing.assert_array_equal(ours, ref)
    assert 0.65 < float(jnp.mean(ours)) < 0.75


def test_same_bits_when_the_batch_is_sharded():
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    ids = jax.device_put(jnp.arange(16), sharding)
    raw = jax.random.PRNGKey(5)
    ours = jax.jit(jax.vmap(lambda i: random.uniform(jax.random.fold_in(raw, i), (4, 4))))(ids)
    ref = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(raw, i), (4, 4)))(jnp.arange(16))
    np.testing.assert_array_equal(ours, ref)


def test_other_key_implementations_fall_back_to_jax_random():
    key = jax.random.key(0, impl="rbg")
    np.testing.assert_array_equal(random.uniform(key, (8,)), jax.random.uniform(key, (8,)))
