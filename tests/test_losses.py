"""Losses against hand-computed values, float64 numpy/scipy references and Monte Carlo."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from gan_jax import losses
from gan_jax.errors import ConfigError


def _np_log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


@pytest.mark.parametrize("name", ["minimax", "non_saturating"])
def test_gan_losses_match_definitions(name):
    rng = np.random.RandomState(0)
    real, fake = rng.randn(7) * 3, rng.randn(5) * 3
    d_loss, g_loss = losses.GAN_LOSSES[name](jnp.asarray(real), jnp.asarray(fake))
    # L_D = -E log D(x) - E log(1 - D(G(z))), D = sigmoid(logit), in float64 numpy.
    d_ref = -np.mean(_np_log_sigmoid(real)) - np.mean(_np_log_sigmoid(-fake))
    g_ref = np.mean(_np_log_sigmoid(-fake)) if name == "minimax" else -np.mean(_np_log_sigmoid(fake))
    np.testing.assert_allclose(d_loss, d_ref, rtol=1e-5)
    np.testing.assert_allclose(g_loss, g_ref, rtol=1e-5)


def test_gan_losses_hand_values():
    # logits 0: D = 1/2 everywhere, so L_D = 2 log 2 and both generator losses are +-log 2.
    zero = jnp.zeros(4)
    d, g = losses.minimax(zero, zero)
    assert d == pytest.approx(2 * np.log(2), rel=1e-6) and g == pytest.approx(-np.log(2), rel=1e-6)
    d, g = losses.non_saturating(zero, zero)
    assert g == pytest.approx(np.log(2), rel=1e-6)
    # logit l = log 3: D = 3/4. -log(1 - 3/4) = log 4; -log(3/4) = log(4/3).
    l3 = jnp.full(3, np.log(3.0))
    d, g = losses.non_saturating(l3, l3)
    assert d == pytest.approx(np.log(4 / 3) + np.log(4), rel=1e-6)
    assert g == pytest.approx(np.log(4 / 3), rel=1e-6)


@pytest.mark.parametrize("name", sorted(losses.GAN_LOSSES))
def test_gan_losses_finite_at_extreme_logits(name):
    for value in (-100.0, 100.0):
        logits = jnp.full(3, value)
        out = losses.GAN_LOSSES[name](logits, logits)
        grads = jax.grad(lambda r, f: sum(losses.GAN_LOSSES[name](r, f)), argnums=(0, 1))(logits, logits)
        assert all(np.isfinite(np.asarray(x)).all() for x in (*out, *grads)), (name, value, out, grads)
    # The value itself is right at the extremes: softplus(100) = 100.
    d, _ = losses.non_saturating(jnp.full(2, -100.0), jnp.full(2, 100.0))
    assert d == pytest.approx(200.0, rel=1e-6)


def test_unknown_loss_is_a_config_error():
    with pytest.raises(ConfigError, match="loss.name='nope'.*accepted: minimax, non_saturating"):
        losses.get_gan_loss("nope")


def test_gaussian_kl_closed_form_and_monte_carlo():
    rng = np.random.RandomState(1)
    mean, logvar = rng.randn(3, 4), rng.randn(3, 4) * 0.5
    kl = np.asarray(losses.gaussian_kl(jnp.asarray(mean), jnp.asarray(logvar)))
    std = np.exp(0.5 * logvar)
    # Closed form per dimension from the textbook: log(s2/s1) + (s1^2 + (m1-m2)^2) / (2 s2^2) - 1/2.
    ref = np.sum(np.log(1.0 / std) + (std**2 + mean**2) / 2 - 0.5, axis=-1)
    np.testing.assert_allclose(kl, ref, rtol=1e-5)
    # Monte Carlo: E_q[log q(z) - log p(z)] with 200k samples, float64 scipy densities.
    z = mean[0] + std[0] * rng.randn(200_000, 4)
    mc = np.mean(stats.norm.logpdf(z, mean[0], std[0]).sum(-1) - stats.norm.logpdf(z).sum(-1))
    assert abs(mc - kl[0]) < 0.02 * max(1.0, kl[0])


def test_likelihoods_against_scipy():
    rng = np.random.RandomState(2)
    x = (rng.rand(2, 3, 3, 1) > 0.5).astype(np.float64)
    logits = rng.randn(2, 3, 3, 1) * 4
    ref = -stats.bernoulli.logpmf(x, 1 / (1 + np.exp(-logits))).reshape(2, -1).sum(-1)
    np.testing.assert_allclose(losses.bernoulli_nll(jnp.asarray(x), jnp.asarray(logits)), ref, rtol=1e-5)
    xg, mean = rng.rand(2, 3, 3, 1), rng.rand(2, 3, 3, 1)
    ref = -stats.norm.logpdf(xg, mean, 0.1).reshape(2, -1).sum(-1)
    np.testing.assert_allclose(losses.gaussian_nll(jnp.asarray(xg), jnp.asarray(mean), std=0.1), ref, rtol=1e-5)


def test_negative_elbo_weights_kl_by_beta():
    rng = np.random.RandomState(3)
    x = jnp.asarray((rng.rand(4, 2, 2, 1) > 0.5).astype(np.float32))
    logits, mean, logvar = (jnp.asarray(rng.randn(*s).astype(np.float32)) for s in ((4, 2, 2, 1), (4, 3), (4, 3)))
    loss1, parts = losses.negative_elbo(x, logits, mean, logvar, beta=1.0)
    loss4, _ = losses.negative_elbo(x, logits, mean, logvar, beta=4.0)
    np.testing.assert_allclose(loss1, parts["reconstruction"] + parts["kl"], rtol=1e-6)
    np.testing.assert_allclose(loss4 - loss1, 3.0 * parts["kl"], rtol=1e-5)
    with pytest.raises(ConfigError, match="loss.likelihood='poisson'"):
        losses.negative_elbo(x, logits, mean, logvar, likelihood="poisson")
