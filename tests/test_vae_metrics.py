"""IWAE log-likelihood against numerical integration on tiny VAEs, active units, fixed binarization."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gan_jax import losses, models
from gan_jax.evaluate import vae_metrics as vm

SHAPE = (4, 4, 1)


def _tiny_vae(latent_dim, decoder_scale=2.0):
    """A 16-pixel MLP VAE at its random init, the decoder's weights scaled up so that p(x | z) depends
    strongly on z and the ELBO is many nats below log p(x) (q is far from the true posterior)."""
    vae = models.build(ml_collections.ConfigDict({"name": "vae", "latent_dim": latent_dim, "hidden": 16,
                                                  "depth": 1}), SHAPE)["vae"]
    params = vae.init({"params": jax.random.PRNGKey(0), "latent": jax.random.PRNGKey(1)}, jnp.zeros((1, *SHAPE)))
    params = {name: jax.tree.map(lambda p: p * decoder_scale, v) if name.startswith("dec") else v
              for name, v in params["params"].items()}
    return vae, params


def _binary_x(n=3, seed=5):
    return np.asarray(jax.random.bernoulli(jax.random.PRNGKey(seed), 0.5, (n, *SHAPE)), np.float32)


def _grid_log_px(vae, params, x, likelihood="bernoulli", std=0.1):
    """log p(x) = log integral p(x | z) N(z; 0, I) dz by a Riemann sum over a dense grid on [-8, 8]^L,
    in float64: (N,) nats."""
    latent = vae.latent_dim
    g = np.linspace(-8.0, 8.0, 4001 if latent == 1 else 401)
    grid = np.stack(np.meshgrid(*[g] * latent, indexing="ij"), -1).reshape(-1, latent)
    decoded = np.asarray(vae.apply({"params": params}, jnp.asarray(grid, jnp.float32), method=vae.decode), np.float64)
    log_prior = np.sum(-0.5 * grid ** 2 - 0.5 * math.log(2 * math.pi), -1)
    out = []
    for xi in np.asarray(x, np.float64):
        if likelihood == "bernoulli":
            nll = np.logaddexp(0.0, decoded) - xi * decoded
        else:
            nll = 0.5 * ((xi - decoded) / std) ** 2 + math.log(std) + 0.5 * math.log(2 * math.pi)
        log_joint = log_prior - nll.reshape(len(grid), -1).sum(-1)
        top = log_joint.max()
        out.append(top + math.log(np.exp(log_joint - top).sum()) + latent * math.log(g[1] - g[0]))
    return np.array(out)


def _replicated(vae, params, x, k, reps, **kw):
    """`reps` independent k-sample estimates per example (distinct example ids): (reps, N). batch_k=1: one
    compiled shape for every k."""
    xr = np.tile(x, (reps, 1, 1, 1))
    est = vm.iwae_log_likelihood(vae, params, xr, k, jax.random.PRNGKey(7), batch_k=1,
                                 example_ids=np.arange(len(xr)), **kw)
    return est.reshape(reps, len(x))


# The tests below share one model shape (latent 2) and a few (N, batch_k) shapes, so that XLA compiles
# the estimator only a handful of times (each compile of the keyed noise takes seconds on a small CPU).


def test_iwae_approaches_the_integral_and_bounds_it_from_below():
    vae, params = _tiny_vae(2)
    x = _binary_x()
    exact = _grid_log_px(vae, params, x)
    big = vm.iwae_log_likelihood(vae, params, x, 5000, jax.random.PRNGKey(3), batch_k=2500)
    assert big.shape == (3,) and big.dtype == np.float64
    np.testing.assert_allclose(big, exact, atol=0.3)  # measured errors: 0.01 .. 0.09 nats
    means = {k: _replicated(vae, params, x, k, reps=400).mean(0) for k in (1, 10)}
    assert np.all(means[1] < exact - 1.0)  # the one-sample ELBO is far below: the test can see a difference
    assert np.all(means[1] < means[10]) and np.all(means[10] <= exact + 0.05)  # E[L_k] <= log p(x), up in k
    assert np.all(np.abs(big - exact) < np.abs(means[10] - exact))


def test_iwae_gaussian_likelihood_with_1d_latent_matches_the_integral():
    vae, params = _tiny_vae(1, decoder_scale=1.0)
    x = np.asarray(jax.random.uniform(jax.random.PRNGKey(2), (2, *SHAPE)), np.float32)
    exact = _grid_log_px(vae, params, x, "gaussian", std=0.5)
    est = vm.iwae_log_likelihood(vae, params, x, 2000, jax.random.PRNGKey(0), batch_k=2000,
                                 likelihood="gaussian", gaussian_std=0.5)
    np.testing.assert_allclose(est, exact, atol=0.1)


def test_k1_expectation_is_the_elbo():
    vae, params = _tiny_vae(2, decoder_scale=1.0)
    x, reps = _binary_x(), 400
    one = _replicated(vae, params, x, 1, reps)  # (reps, N) one-sample estimates
    for j in range(len(x)):
        xr = jnp.broadcast_to(x[j], (4000, *SHAPE))
        decoded, mean, logvar = vae.apply({"params": params}, xr, train=False, rngs={"latent": jax.random.PRNGKey(j)})
        neg_elbo = float(losses.negative_elbo(xr, decoded, mean, logvar, "bernoulli")[1]["neg_elbo"])
        standard_error = one[:, j].std() / math.sqrt(reps)
        assert one[:, j].mean() == pytest.approx(-neg_elbo, abs=4 * standard_error + 1e-3)


def test_result_does_not_depend_on_batch_k():
    vae, params = _tiny_vae(2)
    x, key = _binary_x(), jax.random.PRNGKey(11)
    ref = vm.iwae_log_likelihood(vae, params, x, 30, key, batch_k=30)
    for batch_k in (7, 64):  # 7: 30 = 4 * 7 + 2, the last call padded; 64 > k
        np.testing.assert_allclose(vm.iwae_log_likelihood(vae, params, x, 30, key, batch_k=batch_k), ref,
                                   rtol=0, atol=1e-5)
    assert not np.allclose(vm.iwae_log_likelihood(vae, params, x, 30, jax.random.PRNGKey(12), batch_k=30), ref)
    with pytest.raises(ValueError):
        vm.iwae_log_likelihood(vae, params, x, 0, key)


def test_dataset_iwae_does_not_depend_on_batch_size():
    vae, params = _tiny_vae(2)
    x = _binary_x(n=6)
    ref = vm.dataset_iwae(vae, params, x, k=30, seed=3, batch_size=3, batch_k=30)
    assert ref.shape == (6,)
    other = vm.dataset_iwae(vae, params, x, k=30, seed=3, batch_size=4, batch_k=7)  # last batch of 2 padded to 4
    np.testing.assert_allclose(other, ref, rtol=0, atol=1e-5)
    # an example's estimate is a function of (seed, its index, itself): the same inside any batch
    some = vm.iwae_log_likelihood(vae, params, x[[4, 1, 5]], 30, jax.random.PRNGKey(3), 7,
                                  example_ids=np.array([4, 1, 5]))
    np.testing.assert_allclose(some, ref[[4, 1, 5]], rtol=0, atol=1e-5)


def test_active_units_on_constructed_means():
    rng = np.random.default_rng(0)
    n = 10000
    columns = [np.zeros(n) + 3.0,  # constant: variance 0
               0.05 * rng.standard_normal(n),  # variance 0.0025
               0.3 * rng.standard_normal(n),  # variance 0.09
               2.0 * rng.standard_normal(n),  # variance 4
               np.where(np.arange(n) % 2 == 0, -0.5, 0.5)]  # variance exactly 0.25
    means = np.stack(columns, 1)
    assert vm.active_units(means) == 3
    assert vm.active_units(means, threshold=0.001) == 4
    assert vm.active_units(means, threshold=0.25) == 1  # strictly greater than the threshold
    assert vm.active_units(means, threshold=0.2499) == 2
    assert vm.active_units(means[:, :1]) == 0
    with pytest.raises(ValueError):
        vm.active_units(means[:, 0])


def test_posterior_means_of_a_data_set():
    vae, params = _tiny_vae(2)
    x = _binary_x(n=7)
    mu = vm.posterior_means(vae, params, x, batch_size=3)
    expected = vae.apply({"params": params}, jnp.asarray(x), method=vae.encode)[0]
    assert mu.shape == (7, 2)
    np.testing.assert_allclose(mu, expected, rtol=1e-5, atol=1e-6)
    assert vm.active_units(mu, threshold=0.0) == 2


def test_binarize_once():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(10050, 2, 2, 1), dtype=np.uint8)  # over one internal chunk of 10,000
    images[:, 0, 0, 0], images[:, 0, 1, 0], images[:, 1, 0, 0] = 0, 255, 128
    bits = vm.binarize_once(images, seed=0)
    assert bits.shape == images.shape and bits.dtype == np.float32
    assert set(np.unique(bits)) <= {0.0, 1.0}
    assert np.all(bits[:, 0, 0, 0] == 0) and np.all(bits[:, 0, 1, 0] == 1)
    assert bits[:, 1, 0, 0].mean() == pytest.approx(128 / 255, abs=0.02)
    assert bits[:, 1, 1, 0].mean() == pytest.approx(images[:, 1, 1, 0].mean() / 255, abs=0.02)
    np.testing.assert_array_equal(vm.binarize_once(images, seed=0), bits)  # deterministic
    np.testing.assert_array_equal(vm.binarize_once(images[:37], seed=0), bits[:37])  # a prefix: the same bits
    # Example j's bits, one example at a time with jax.random (no chunks, no padding, no vmap), in
    # the first chunk, at its edge and in the padded last one.
    for j in (0, 1, 9_999, 10_000, 10_049):
        u = np.asarray(jax.random.uniform(jax.random.fold_in(jax.random.PRNGKey(0), j), images.shape[1:]))
        np.testing.assert_array_equal(bits[j], (u < images[j] / np.float32(255.0)).astype(np.float32))
    assert not np.array_equal(vm.binarize_once(images, seed=1), bits)
    with pytest.raises(ValueError, match="uint8"):
        vm.binarize_once(images.astype(np.float32))
