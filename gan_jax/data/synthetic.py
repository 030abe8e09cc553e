"""Gaussian mixtures for mode-collapse studies (PacGAN protocol), sampled on the device from a key."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import keys


def ring8_means() -> np.ndarray:
    """(8, 2): means (cos 2 pi k/8, sin 2 pi k/8)."""
    angles = 2 * math.pi * np.arange(8) / 8
    return np.stack([np.cos(angles), np.sin(angles)], -1).astype(np.float32)


def grid25_means() -> np.ndarray:
    """(25, 2): means in {-4, -2, 0, 2, 4}^2."""
    values = np.arange(-4, 5, 2, dtype=np.float32)
    return np.stack(np.meshgrid(values, values, indexing="ij"), -1).reshape(-1, 2)


MIXTURES = {"ring8": (ring8_means, 0.01), "grid25": (grid25_means, 0.05)}


def sample_mixture(name: str, key: jax.Array, num: int) -> jnp.ndarray:
    """`num` points (num, 2) float32 from the named mixture: uniform weights, isotropic std."""
    means_fn, std = MIXTURES[name]
    means = jnp.asarray(means_fn())
    component_key, noise_key = jax.random.split(key)
    components = jax.random.randint(component_key, (num,), 0, means.shape[0])
    return means[components] + std * jax.random.normal(noise_key, (num, 2))


def training_set_points(name: str, base_key: jax.Array, ids: jnp.ndarray) -> jnp.ndarray:
    """Points (len(ids), 2) of a run's fixed training set (data.num_examples): example j is
    sample_mixture(name, fold_in(fold_in(base_key, keys.TRAINING_SET), j), 1), a function of (base key, j)
    alone, so the set is never stored (nor closed over by the step: vmapped runs each have their own)."""
    set_key = jax.random.fold_in(base_key, keys.TRAINING_SET)
    return jax.vmap(lambda j: sample_mixture(name, jax.random.fold_in(set_key, j), 1)[0])(ids)
