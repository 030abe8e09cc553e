"""Spectral normalization of D (model.spectral_norm): the power-iteration estimate against numpy's SVD,
the gradient with u and v held constant against finite differences, and the step keeping D's kernels
at spectral norm ~1 with its vectors in the train state."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import models
from gan_jax.config import base_config
from gan_jax.objectives import build_steps
from gan_jax.objectives.gan import SPECTRAL_NORM
from gan_jax.ops import spectral_norm as sn


def _top_singular_value(w) -> float:
    w = np.asarray(w, np.float64)
    return float(np.linalg.svd(w.reshape(-1, w.shape[-1]), compute_uv=False)[0])


@pytest.mark.parametrize("shape", [(20, 30), (3, 3, 4, 8)])
def test_power_iteration_converges_to_the_largest_singular_value(shape):
    params = {"kernel": jax.random.normal(jax.random.PRNGKey(0), shape), "bias": jnp.ones((shape[-1],))}
    u = sn.init_vectors(params, jax.random.PRNGKey(1))
    assert u["bias"].shape == ()  # a placeholder: biases are not normalized
    for _ in range(200):
        u = sn.power_iteration(params, u)
    estimate = float(sn.sigma(params["kernel"], u["kernel"]))
    np.testing.assert_allclose(estimate, _top_singular_value(params["kernel"]), rtol=1e-4)
    normalized = sn.normalize(params, u)
    np.testing.assert_allclose(_top_singular_value(normalized["kernel"]), 1.0, rtol=1e-4)
    np.testing.assert_array_equal(normalized["bias"], params["bias"])  # only kernels are normalized


def test_the_gradient_holds_u_and_v_constant():
    # d/dW sum(c * W / (v^T W u)) with u, v fixed (Miyato et al.), against float64 central differences.
    with jax.enable_x64(True):
        rng = np.random.RandomState(0)
        w, u, c = rng.randn(5, 4), rng.randn(4), rng.randn(5, 4)
        u = u / np.linalg.norm(u)
        v = w @ u / np.linalg.norm(w @ u)
        f = lambda w: jnp.sum(c * w / sn.sigma(w, jnp.asarray(u)))
        grad = np.asarray(jax.grad(f)(jnp.asarray(w)))
        g_fixed = lambda w: np.sum(c * w / (v @ w @ u))  # v frozen at the point of differentiation
        h, numeric = 1e-6, np.zeros_like(w)
        for i in np.ndindex(w.shape):
            e = np.zeros_like(w)
            e[i] = h
            numeric[i] = (g_fixed(w + e) - g_fixed(w - e)) / (2 * h)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


def _ring_builder(spectral, update_rule="alternating"):
    c = base_config()
    c.train.update_rule = update_rule
    c.objective, c.data.name, c.data.source, c.data.batch_size = "gan", "ring8", "synthetic", 64
    c.model.name, c.model.latent_dim, c.model.spectral_norm = "mlp_gan", 2, spectral
    c.model.generator_width, c.model.discriminator_width, c.model.maxout_pieces = 32, 16, 3
    c.optimizer.learning_rate, c.train.steps_per_call = 1e-3, 100
    return build_steps(c, models.build(c.model, (2,)), (2,), "ring8", False)


@pytest.mark.parametrize("update_rule", ["alternating", "simultaneous"])
def test_the_step_keeps_the_discriminator_kernels_at_spectral_norm_one(update_rule):
    plain = _ring_builder(False).init_state(0)
    assert SPECTRAL_NORM not in plain.batch_stats  # states without it are unchanged (old checkpoints)
    builder = _ring_builder(True, update_rule)
    state, step = builder.init_state(0), jax.jit(builder.multi_step)
    for _ in range(2):
        state, metrics = step(state, None)
    assert np.asarray(metrics["finite"]).all()
    vectors = state.batch_stats[SPECTRAL_NORM]
    normalized = sn.normalize(state.params["discriminator"], vectors)
    kernels = [w for w in jax.tree.leaves(normalized) if w.ndim >= 2]
    assert kernels
    for w in kernels:  # one power iteration per update keeps up with D's slowly moving kernels
        np.testing.assert_allclose(_top_singular_value(w), 1.0, rtol=0.02)
