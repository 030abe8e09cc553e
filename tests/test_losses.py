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


def _np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _np_ra(real, fake):
    return real - fake.mean(), fake - real.mean()  # C_r (N,), C_f (M,)


# Each paper's formula written out in float64 numpy: D = sigmoid(logit) for the cross-entropy losses.
def _ref_ragan(real, fake):
    c_r, c_f = _np_ra(real, fake)
    d = -np.mean(np.log(_np_sigmoid(c_r))) - np.mean(np.log(1 - _np_sigmoid(c_f)))
    return d, -np.mean(np.log(_np_sigmoid(c_f))) - np.mean(np.log(1 - _np_sigmoid(c_r)))


def _ref_rahinge(real, fake):
    c_r, c_f = _np_ra(real, fake)
    d = np.mean(np.maximum(0, 1 - c_r)) + np.mean(np.maximum(0, 1 + c_f))
    return d, np.mean(np.maximum(0, 1 - c_f)) + np.mean(np.maximum(0, 1 + c_r))


_GAN_REFERENCES = {
    "minimax": lambda r, f: (-np.mean(np.log(_np_sigmoid(r))) - np.mean(np.log(1 - _np_sigmoid(f))),
                             np.mean(np.log(1 - _np_sigmoid(f)))),
    "non_saturating": lambda r, f: (-np.mean(np.log(_np_sigmoid(r))) - np.mean(np.log(1 - _np_sigmoid(f))),
                                    -np.mean(np.log(_np_sigmoid(f)))),
    "least_squares": lambda r, f: (0.5 * np.mean((r - 1) ** 2) + 0.5 * np.mean(f**2), 0.5 * np.mean((f - 1) ** 2)),
    "wasserstein": lambda r, f: (np.mean(f) - np.mean(r), -np.mean(f)),
    "hinge": lambda r, f: (np.mean(np.maximum(0, 1 - r)) + np.mean(np.maximum(0, 1 + f)), -np.mean(f)),
    "relativistic_average": _ref_ragan,
    "relativistic_average_hinge": _ref_rahinge,
    # RpGAN: D's probability that x_i is more real than its pair G(z_i) is sigmoid(D(x_i) - D(G(z_i))).
    "relativistic_pairing": lambda r, f: (-np.mean(np.log(_np_sigmoid(r - f))), -np.mean(np.log(_np_sigmoid(f - r)))),
}
RELATIVISTIC = ["relativistic_average", "relativistic_average_hinge"]


@pytest.mark.parametrize("name", sorted(losses.GAN_LOSSES))
@pytest.mark.parametrize("seed", [0, 1])
def test_gan_losses_match_closed_forms(name, seed):
    assert name in _GAN_REFERENCES, f"GAN loss {name!r} has no float64 reference in _GAN_REFERENCES"
    rng = np.random.RandomState(seed)
    # N != M: a mean over the wrong batch shows (paired losses take N = M)
    real, fake = rng.randn(4 if name in losses.PAIRED else 7) * 3 + 0.5, rng.randn(4) * 3 - 0.5
    out = losses.GAN_LOSSES[name](jnp.asarray(real), jnp.asarray(fake))
    np.testing.assert_allclose(np.asarray(out, np.float64), _GAN_REFERENCES[name](real, fake), rtol=1e-5, atol=1e-5)


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
    fn = losses.GAN_LOSSES[name]
    for real_value in (-100.0, 100.0):
        for fake_value in (-100.0, 100.0):
            real, fake = jnp.full(2 if name in losses.PAIRED else 3, real_value), jnp.full(2, fake_value)
            out = fn(real, fake)
            # d(L_D), d(L_G) w.r.t. (real, fake): shapes (2, 3) (paired: (2, 2)) and (2, 2).
            grads = jax.jacrev(lambda r, f: jnp.stack(fn(r, f)), argnums=(0, 1))(real, fake)
            assert all(np.isfinite(np.asarray(x)).all() for x in (*out, *grads)), (real_value, fake_value, out, grads)
    # The value itself is right at the extremes: softplus(100) = 100.
    d, _ = losses.non_saturating(jnp.full(2, -100.0), jnp.full(2, 100.0))
    assert d == pytest.approx(200.0, rel=1e-6)
    # RaGAN with D sure and right: C_r = 200, C_f = -200, so L_D = 2 softplus(-200) ~ 0 and L_G = 400.
    d, g = losses.relativistic_average(jnp.full(3, 100.0), jnp.full(2, -100.0))
    assert d == pytest.approx(0.0, abs=1e-30) and g == pytest.approx(400.0, rel=1e-6)


@pytest.mark.parametrize("name", RELATIVISTIC)
def test_relativistic_gradients_match_finite_differences(name):
    # The means inside C_r and C_f couple every logit to every other: autodiff must follow them.
    fn = losses.GAN_LOSSES[name]
    rng = np.random.RandomState(4)
    with jax.enable_x64(True):
        real, fake = jnp.asarray(rng.randn(6) * 2, jnp.float64), jnp.asarray(rng.randn(5) * 2, jnp.float64)
        if name == "relativistic_average_hinge":  # central differences need every hinge away from its kink
            c_r, c_f = _np_ra(np.asarray(real), np.asarray(fake))
            assert min(np.abs(1 - c_r).min(), np.abs(1 + c_f).min(), np.abs(1 - c_f).min(),
                       np.abs(1 + c_r).min()) > 1e-3
        eps = 1e-6
        for which in (0, 1):  # L_D (the brief's check) and L_G, both w.r.t. the fake logits
            grad = np.asarray(jax.grad(lambda f, w=which: fn(real, f)[w])(fake))
            assert grad.dtype == np.float64
            fd = np.array([(float(fn(real, fake.at[j].add(eps))[which]) - float(fn(real, fake.at[j].add(-eps))[which]))
                           / (2 * eps) for j in range(fake.shape[0])])
            np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)
    assert jnp.zeros(1).dtype == jnp.float32  # x64 stays inside the test


def test_least_squares_optimal_discriminator():
    # Three points x with densities p_data = (.5, .3, .2), p_g = (.2, .3, .5), as batches of 10 samples
    # each: L_D is minimized by D*(x) = p_data / (p_data + p_g) (Mao et al., b = 1, a = 0), 1/2 where equal.
    real_counts, fake_counts = np.array([5, 3, 2]), np.array([2, 3, 5])

    def d_loss(values):  # values (3,): D's output at the three points
        return losses.least_squares(jnp.repeat(values, real_counts), jnp.repeat(values, fake_counts))[0]

    optimum = jnp.asarray(real_counts / (real_counts + fake_counts), jnp.float32)
    assert float(optimum[1]) == 0.5
    np.testing.assert_allclose(jax.grad(d_loss)(optimum), 0.0, atol=1e-7)
    for step in np.eye(3) * 0.1:
        assert d_loss(optimum + step) > d_loss(optimum) and d_loss(optimum - step) > d_loss(optimum)
    # G's loss is 0 only when D says 1 (c = 1) on every fake.
    assert losses.least_squares(jnp.zeros(2), jnp.ones(3))[1] == 0.0


def test_wasserstein_critic_is_defined_up_to_a_constant():
    rng = np.random.RandomState(5)
    real, fake = jnp.asarray(rng.randn(6)), jnp.asarray(rng.randn(3))
    d, g = losses.wasserstein(real, fake)
    d_shift, g_shift = losses.wasserstein(real + 7.0, fake + 7.0)
    # L_D (minus the distance estimate) ignores a constant added to the critic; L_G's gradient does too.
    assert d_shift == pytest.approx(float(d), abs=1e-5) and g_shift == pytest.approx(float(g) - 7.0, abs=1e-5)
    np.testing.assert_allclose(jax.grad(lambda f: losses.wasserstein(real, f)[1])(fake), -np.ones(3) / 3, rtol=1e-6)


def test_hinge_is_zero_beyond_the_margin():
    real, fake = jnp.array([1.0, 2.5, 40.0]), jnp.array([-1.0, -3.0])
    d, g = losses.hinge(real, fake)
    assert d == 0.0 and g == pytest.approx(2.0)
    grads = jax.grad(lambda r, f: losses.hinge(r, f)[0], argnums=(0, 1))(real + 0.01, fake - 0.01)
    assert all(np.all(np.asarray(x) == 0.0) for x in grads)  # D stops pushing once past the margin
    # Inside the margin it costs linearly: one real logit at 0 adds 1/3.
    assert losses.hinge(real.at[0].set(0.0), fake)[0] == pytest.approx(1 / 3)


@pytest.mark.parametrize("name", RELATIVISTIC)
def test_relativistic_losses_are_relative(name):
    fn = losses.GAN_LOSSES[name]
    rng = np.random.RandomState(6)
    real, fake = jnp.asarray(rng.randn(5)), jnp.asarray(rng.randn(8))
    d, g = fn(real, fake)
    # Only differences between real and fake logits count: a shift of both changes nothing.
    np.testing.assert_allclose(fn(real + 5.0, fake + 5.0), (d, g), rtol=1e-5)
    # L_G is L_D with the roles of real and fake swapped (Jolicoeur-Martineau's symmetric G loss).
    assert fn(fake, real)[0] == pytest.approx(float(g), rel=1e-6)
    # Equal logits everywhere: C = 0, so each term is log 2 (RaGAN) or 1 (hinge).
    same = fn(jnp.full(5, 3.0), jnp.full(8, 3.0))
    np.testing.assert_allclose(same, (2 * np.log(2),) * 2 if name == "relativistic_average" else (2.0, 2.0),
                               rtol=1e-6)
    if name == "relativistic_average_hinge":
        # Zero D loss once every real beats the average fake by 1 and every fake trails the average real
        # by 1, even with real logits below the absolute hinge's margin of 1.
        assert fn(jnp.full(3, 0.6), jnp.full(2, -0.6))[0] == 0.0


def test_relativistic_pairing_pairs_by_index():
    rng = np.random.RandomState(7)
    real, fake = rng.randn(6) * 2, rng.randn(6) * 2
    d, g = losses.relativistic_pairing(jnp.asarray(real), jnp.asarray(fake))
    # Control: the same logits paired differently give another loss (so the pairing is read), and the
    # all-pairs (unpaired) form differs too.
    perm = np.roll(np.arange(6), 1)
    d_perm, _ = losses.relativistic_pairing(jnp.asarray(real), jnp.asarray(fake[perm]))
    all_pairs = -np.mean(np.log(_np_sigmoid(real[:, None] - fake[None, :])))
    assert abs(float(d_perm) - float(d)) > 1e-3 and abs(all_pairs - float(d)) > 1e-3
    # A shift of both logits changes nothing; swapping real and fake swaps L_D and L_G.
    np.testing.assert_allclose(losses.relativistic_pairing(jnp.asarray(real + 4), jnp.asarray(fake + 4)), (d, g),
                               rtol=1e-5)
    np.testing.assert_allclose(losses.relativistic_pairing(jnp.asarray(fake), jnp.asarray(real)), (g, d), rtol=1e-6)
    # Equal logits: both losses are log 2; batches of different sizes are refused.
    np.testing.assert_allclose(losses.relativistic_pairing(jnp.zeros(3), jnp.zeros(3)), (np.log(2),) * 2, rtol=1e-6)
    with pytest.raises(ValueError, match="pairs real and generated logits one to one"):
        losses.relativistic_pairing(jnp.zeros(3), jnp.zeros(2))


def test_unknown_loss_is_a_config_error():
    with pytest.raises(ConfigError, match="loss.name='nope'.*accepted: hinge, least_squares, minimax, non_saturating, "
                       "relativistic_average, relativistic_average_hinge, relativistic_pairing, wasserstein"):
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


def _np_negative_elbo_parts(x, logits, mean, logvar):
    """(Bernoulli NLL, KL(N(mean, exp(logvar)) || N(0, I))) per example, float64 numpy from the densities."""
    x, logits, mean, logvar = (np.asarray(a, np.float64) for a in (x, logits, mean, logvar))
    p = _np_sigmoid(logits)
    nll = -np.sum((x * np.log(p) + (1 - x) * np.log1p(-p)).reshape(len(x), -1), axis=-1)
    kl = 0.5 * np.sum(np.exp(logvar) + mean**2 - 1.0 - logvar, axis=-1)
    return nll, kl


@pytest.mark.parametrize("beta", [1.0, 4.0])
def test_negative_elbo_weights_kl_by_beta(beta):
    rng = np.random.RandomState(3)
    x = jnp.asarray((rng.rand(4, 2, 2, 1) > 0.5).astype(np.float32))
    logits, mean, logvar = (jnp.asarray(rng.randn(*s).astype(np.float32)) for s in ((4, 2, 2, 1), (4, 3), (4, 3)))
    loss, parts = losses.negative_elbo(x, logits, mean, logvar, beta=beta)
    nll, kl = _np_negative_elbo_parts(x, logits, mean, logvar)
    assert kl.mean() > 0.1 * nll.mean()  # the weight moves the loss: beta = 4 is 9.4 nats above beta = 1 here
    np.testing.assert_allclose(loss, np.mean(nll + beta * kl), rtol=1e-5)
    np.testing.assert_allclose(parts["reconstruction"], nll.mean(), rtol=1e-5)
    np.testing.assert_allclose(parts["kl"], kl.mean(), rtol=1e-5)
    np.testing.assert_allclose(parts["neg_elbo"], np.mean(nll + kl), rtol=1e-5)
    with pytest.raises(ConfigError, match="loss.likelihood='poisson'"):
        losses.negative_elbo(x, logits, mean, logvar, likelihood="poisson")
