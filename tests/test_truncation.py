"""Truncated latents (eval.truncation, --truncation): each method against its definition (scipy's
truncated normal, numpy's clip of the same draws) and untruncated sampling unchanged to the bit. A trained
run's truncated samples, samples.npz and evaluations: tests/test_api.py."""

import jax
import numpy as np
from scipy import stats

from gan_jax import latents


def test_each_method_is_its_definition():
    key, shape, t = jax.random.PRNGKey(3), (4000, 8), 0.7
    normal = np.asarray(jax.random.normal(key, shape))
    np.testing.assert_array_equal(np.asarray(latents.draw(key, shape)), normal)  # 0: untruncated, same bits
    np.testing.assert_array_equal(np.asarray(latents.draw(key, shape, t, "clip")), np.clip(normal, -t, t))
    z = np.asarray(latents.draw(key, shape, t, "resample"), np.float64)
    assert np.abs(z).max() <= t and z.std() < 0.5
    # N(0, 1) conditioned on |z| <= t: a KS test of the 32,000 draws against scipy's truncated normal.
    assert stats.kstest(z.ravel(), stats.truncnorm(-t, t).cdf).pvalue > 1e-3
