"""The VAE family's objectives: the IWAE bound (loss.iwae_k) against a float64 numpy/scipy reference,
beta as a hyperparameter array, and VAE-GAN's three losses routed to the right networks, its
feature-space reconstruction against a second forward of the discriminator."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from gan_jax import models
from gan_jax.config import base_config
from gan_jax.errors import ConfigError
from gan_jax.models.dcgan import FEATURES
from gan_jax.objectives import build_steps


def _vae(k=1, beta=1.0, batch=8):
    c = base_config()
    c.objective, c.model.name, c.loss.name = "vae", "vae", "elbo"
    c.model.latent_dim, c.model.hidden, c.data.batch_size = 3, 16, batch
    c.loss.iwae_k, c.loss.beta = k, beta
    c.optimizer.learning_rate, c.optimizer.b1 = 1e-3, 0.9
    shape = (4, 4, 1)
    return build_steps(c, models.build(c.model, shape), shape, None, True)


def _bits(n=8):
    return (np.random.default_rng(0).random((n, 4, 4, 1)) > 0.5).astype(np.float32)


def test_iwae_bound_equals_a_float64_reference():
    steps = _vae(k=5)
    state = steps.init_state(0)
    x = _bits()
    eps = jax.random.normal(jax.random.PRNGKey(1), (8, 5, 3))
    loss, parts = steps.loss(state.params["vae"], jnp.asarray(x), eps, jnp.float32(1.0))
    V, p = steps.nets["vae"], state.params["vae"]
    mean, logvar = (np.asarray(a, np.float64) for a in V.apply({"params": p}, jnp.asarray(x), method=V.encode))
    e = np.asarray(eps, np.float64)
    z = mean[:, None] + np.exp(0.5 * logvar)[:, None] * e
    logits = np.asarray(V.apply({"params": p}, jnp.asarray(z.reshape(-1, 3), jnp.float32), method=V.decode),
                        np.float64).reshape(8, 5, -1)
    xf = x.reshape(8, 1, -1)
    log_px_z = np.sum(xf * -np.logaddexp(0, -logits) + (1 - xf) * -np.logaddexp(0, logits), axis=-1)
    norm = lambda v: np.sum(-0.5 * v * v - 0.5 * np.log(2 * np.pi), axis=-1)  # noqa: E731
    log_w = log_px_z + norm(z) - (norm(e) - 0.5 * np.sum(logvar, axis=-1)[:, None])
    expected = np.mean(logsumexp(log_w, axis=1) - np.log(5))
    np.testing.assert_allclose(float(parts["iwae_bound"]), expected, rtol=2e-5)
    np.testing.assert_allclose(float(loss), -expected, rtol=2e-5)


def test_more_importance_samples_tighten_the_bound():
    # Burda et al., Theorem 1: E[bound_k] is non-decreasing in k; averaged over 200 draws the gap is clear.
    bounds = {}
    for k in (2, 50):
        steps = _vae(k=k)
        state = steps.init_state(0)
        draws = jax.random.normal(jax.random.PRNGKey(2), (200, 8, k, 3))
        f = jax.jit(jax.vmap(lambda e, s=steps, p=state.params["vae"]: s.loss(p, jnp.asarray(_bits()), e,
                                                                                 jnp.float32(1.0))[0]))
        bounds[k] = -float(np.mean(f(draws)))
    assert bounds[50] > bounds[2] + 0.05, bounds


def test_iwae_trains_and_refuses_a_kl_weight():
    steps = _vae(k=4)
    state = steps.init_state(0)
    batch = (np.asarray(_bits()) * 255).astype(np.uint8)[None]
    step = jax.jit(steps.train_step)
    first = None
    for _ in range(60):
        state, m = step(state, batch)
        first = float(m["loss"]) if first is None else first
    assert bool(m["finite"]) and float(m["loss"]) < first
    with pytest.raises(ConfigError, match=r"^loss.beta=0.5 with loss.iwae_k=4"):
        _vae(k=4, beta=0.5)


def test_beta_is_a_hyperparameter_array():
    a, b = _vae(beta=1.0), _vae(beta=4.0)
    batch = (np.asarray(_bits()) * 255).astype(np.uint8)[None, None]
    step = jax.jit(a.multi_step)
    via_array, _ = step(a.init_state(0), batch, b.hyperparameters())
    reference, _ = jax.jit(b.multi_step)(b.init_state(0), batch)
    leaves = lambda s: np.concatenate([np.ravel(v) for v in jax.tree.leaves(s.params)])  # noqa: E731
    np.testing.assert_allclose(leaves(via_array), leaves(reference), rtol=1e-6, atol=1e-7)
    plain, _ = step(a.init_state(0), batch, a.hyperparameters())
    assert step._cache_size() == 1 and np.abs(leaves(plain) - leaves(via_array)).max() > 1e-6


# --- VAE-GAN -------------------------------------------------------------------------------------

def _vaegan(**loss):
    c = base_config()
    c.objective, c.model.name, c.data.batch_size = "vaegan", "vaegan_tutorial", 8
    c.model.latent_dim, c.model.hidden, c.model.generator_width, c.model.discriminator_width = 4, 16, 8, 8
    c.model.dropout_rate = 0.0
    for k, v in loss.items():
        c.loss[k] = v
    shape = (28, 28, 1)
    return build_steps(c, models.build(c.model, shape), shape, None, False)


def _batch():
    return np.random.default_rng(3).integers(0, 256, (1, 8, 28, 28, 1), dtype=np.uint8)


def _after_one_step(steps, step=None, hp=None):
    """Each network's parameters after one update of `steps` (through `step`, its jitted train_step, and
    hyperparameters `hp` when given)."""
    state, _ = (step or jax.jit(steps.train_step))(steps.init_state(0), _batch(), hp)
    return {name: np.concatenate([np.ravel(v) for v in jax.tree.leaves(p)]) for name, p in state.params.items()}


def test_vaegan_routes_each_loss_to_its_networks():
    steps = _vaegan()
    step = jax.jit(steps.train_step)  # gamma and beta reach it as arrays: one program serves the three
    base = _after_one_step(steps, step, steps.hyperparameters())
    other_gamma = _after_one_step(steps, step, _vaegan(feature_reconstruction_weight=5.0).hyperparameters())
    other_beta = _after_one_step(steps, step, _vaegan(beta=3.0).hyperparameters())
    other_loss = _after_one_step(_vaegan(name="least_squares"))
    same = lambda a, b: np.array_equal(a, b)  # noqa: E731
    # gamma weighs the decoder's reconstruction term only; beta the encoder's KL only; the adversarial
    # loss reaches D and the decoder, never the encoder.
    assert same(base["encoder"], other_gamma["encoder"]) and same(base["discriminator"], other_gamma["discriminator"])
    assert not same(base["generator"], other_gamma["generator"])
    assert same(base["generator"], other_beta["generator"]) and same(base["discriminator"], other_beta["discriminator"])
    assert not same(base["encoder"], other_beta["encoder"])
    assert same(base["encoder"], other_loss["encoder"])
    assert not same(base["discriminator"], other_loss["discriminator"])
    assert not same(base["generator"], other_loss["generator"])


def test_vaegan_feature_reconstruction_against_a_second_forward():
    steps = _vaegan()
    state = steps.init_state(0)
    x = jnp.asarray(_batch()[0], jnp.float32) / 127.5 - 1.0
    eps = jax.random.normal(jax.random.PRNGKey(4), (8, 4))
    prior = jax.random.normal(jax.random.PRNGKey(5), (8, 4))
    values, _ = steps.losses(state.params["encoder"], state.params["generator"], state.params["discriminator"],
                             state.batch_stats, None, x, eps, prior, jax.random.PRNGKey(6))
    E, G, D = (steps.nets[n] for n in ("encoder", "generator", "discriminator"))
    (mean, logvar), _ = E.apply({"params": state.params["encoder"], "batch_stats": state.batch_stats["encoder"]}, x,
                                train=True, mutable=["batch_stats"])
    recon, _ = G.apply({"params": state.params["generator"], "batch_stats": state.batch_stats["generator"]},
                       mean + jnp.exp(0.5 * logvar) * eps, train=True, mutable=["batch_stats"])

    def features(images):
        _, inter = D.apply({"params": state.params["discriminator"]}, images, train=False, mutable=["intermediates"])
        return np.asarray(inter["intermediates"][FEATURES][0], np.float64).reshape(8, -1)

    expected_nll = np.mean(0.5 * np.sum((features(x) - features(recon)) ** 2, axis=1))
    m, lv = np.asarray(mean, np.float64), np.asarray(logvar, np.float64)
    expected_kl = np.mean(0.5 * np.sum(np.exp(lv) + m * m - 1 - lv, axis=1))
    np.testing.assert_allclose(float(values[1]), expected_nll, rtol=1e-4)
    np.testing.assert_allclose(float(values[0]), expected_kl, rtol=1e-5)


def test_vaegan_refuses_what_it_does_not_serve():
    with pytest.raises(ConfigError, match=r"^loss.penalties='r1:1' is not served by objective='vaegan'"):
        _vaegan(penalties="r1:1")
