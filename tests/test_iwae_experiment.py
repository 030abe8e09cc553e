"""Burda et al. 2015's Table 1 experiment (experiments/vae_iwae_mnist.py) and its pieces: the k-sample ELBO
(loss.elbo_samples) against a float64 numpy reference, the exponential_stages learning rate schedule
against its closed form at and around every stage boundary with a traced peak, the tanh VAE against a
numpy forward pass, and the experiment's settings, steps and published numbers."""

import importlib.util
import pathlib
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import models, sweep
from gan_jax.config import base_config, validate
from gan_jax.errors import ConfigError
from gan_jax.objectives import build_steps
from gan_jax.objectives.base import learning_rate_schedule

REPO = pathlib.Path(__file__).resolve().parents[1]
SHAPE = (4, 4, 1)


def _vae(elbo_samples=1, iwae_k=1, activation="relu", beta=1.0):
    c = base_config()
    c.objective, c.model.name, c.loss.name = "vae", "vae", "elbo"
    c.model.latent_dim, c.model.hidden, c.data.batch_size = 3, 16, 8
    c.loss.elbo_samples, c.loss.iwae_k, c.loss.beta, c.model.activation = elbo_samples, iwae_k, beta, activation
    validate(c)
    return build_steps(c, models.build(c.model, SHAPE), SHAPE, None, True)


def _bits(n=8):
    return (np.random.default_rng(0).random((n, *SHAPE)) > 0.5).astype(np.float32)


def _log_weights_float64(steps, params, x, eps):
    """log p(x|z) + log N(z; 0, I) - log N(z; mean, diag exp(logvar)) (N, k), from the encoder's and the
    decoder's outputs, in float64, written out from the densities."""
    V = steps.nets["vae"]
    mean, logvar = (np.asarray(a, np.float64) for a in V.apply({"params": params}, jnp.asarray(x), method=V.encode))
    e = np.asarray(eps, np.float64)
    n, k, latent = e.shape
    z = mean[:, None] + np.exp(0.5 * logvar)[:, None] * e
    logits = np.asarray(V.apply({"params": params}, jnp.asarray(z.reshape(-1, latent), jnp.float32), method=V.decode),
                        np.float64).reshape(n, k, -1)
    xf = x.reshape(n, 1, -1).astype(np.float64)
    p = 1.0 / (1.0 + np.exp(-logits))
    log_px_z = np.sum(xf * np.log(p) + (1 - xf) * np.log1p(-p), axis=-1)
    log_pz = np.sum(-0.5 * z * z - 0.5 * np.log(2 * np.pi), axis=-1)
    var = np.exp(logvar)[:, None]
    log_qz = np.sum(-0.5 * (z - mean[:, None]) ** 2 / var - 0.5 * np.log(2 * np.pi * var), axis=-1)
    return log_px_z + log_pz - log_qz


def test_k_sample_elbo_equals_a_float64_reference_and_lies_below_the_iwae_bound():
    steps = _vae(elbo_samples=5)
    params = steps.init_state(0).params["vae"]
    x = _bits()
    eps = jax.random.normal(jax.random.PRNGKey(1), (8, 5, 3))
    loss, parts = steps.loss(params, jnp.asarray(x), eps, jnp.float32(1.0))
    expected = np.mean(_log_weights_float64(steps, params, x, eps))  # mean over samples, then examples
    np.testing.assert_allclose(float(loss), -expected, rtol=2e-5)
    np.testing.assert_allclose(float(parts["neg_elbo"]), -expected, rtol=2e-5)
    # Same draws: the mean of the log-weights is at most their log-mean-exp (Jensen), strictly here.
    iwae_loss, _ = _vae(iwae_k=5).loss(params, jnp.asarray(x), eps, jnp.float32(1.0))
    assert float(iwae_loss) < float(loss) - 1e-3


def test_one_elbo_sample_is_the_closed_form_kl_elbo():
    """loss.elbo_samples = 1: the Bernoulli NLL of one reparameterized draw plus the closed-form Gaussian
    KL, against float64 numpy from the encoder's and the decoder's outputs; the control is the
    one-sample Monte Carlo ELBO of the same draw (log q - log p estimated, not integrated)."""
    steps = _vae(elbo_samples=1)
    params = steps.init_state(0).params["vae"]
    x, eps = _bits(), jax.random.normal(jax.random.PRNGKey(2), (8, 3))
    loss, _ = jax.jit(steps.loss)(params, jnp.asarray(x), eps, jnp.float32(1.0))
    V = steps.nets["vae"]
    mean, logvar = (np.asarray(a, np.float64) for a in V.apply({"params": params}, jnp.asarray(x), method=V.encode))
    z = mean + np.exp(0.5 * logvar) * np.asarray(eps, np.float64)
    logits = np.asarray(V.apply({"params": params}, jnp.asarray(z, jnp.float32), method=V.decode), np.float64)
    p, xf = 1.0 / (1.0 + np.exp(-logits.reshape(8, -1))), x.reshape(8, -1).astype(np.float64)
    nll = -np.sum(xf * np.log(p) + (1 - xf) * np.log1p(-p), axis=-1)
    kl = 0.5 * np.sum(np.exp(logvar) + mean**2 - 1.0 - logvar, axis=-1)
    expected = np.mean(nll + kl)
    monte_carlo = -np.mean(_log_weights_float64(steps, params, x, np.asarray(eps)[:, None]))
    print(f"\nclosed-form KL ELBO: relative difference {abs(float(loss) - expected) / expected:.1e}; "
          f"one-sample Monte Carlo KL: {abs(monte_carlo - expected) / expected:.1e}")
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    assert abs(monte_carlo - expected) > 100 * 1e-5 * expected


def test_k_sample_elbo_trains_and_refuses_what_it_does_not_mean():
    steps = _vae(elbo_samples=4)
    state = steps.init_state(0)
    batch = (_bits() * 255).astype(np.uint8)[None]
    step = jax.jit(steps.train_step)
    state, first = step(state, batch)
    for _ in range(40):
        state, m = step(state, batch)
    assert bool(m["finite"]) and float(m["loss"]) < float(first["loss"])
    with pytest.raises(ConfigError, match=r"^loss.elbo_samples=5 with loss.iwae_k=5: .*accepted: one of them > 1$"):
        _vae(elbo_samples=5, iwae_k=5)
    with pytest.raises(ConfigError, match=r"^loss.beta=2.0 with loss.elbo_samples=5"):
        _vae(elbo_samples=5, beta=2.0)


# --- the schedule ---------------------------------------------------------------------------------

PASSES = [1, 4, 13, 40, 121, 364, 1093, 3280]  # cumulative passes at the end of stages 0..7


def _schedule(steps, warmup=0):
    c = base_config()
    c.optimizer.schedule, c.train.steps, c.optimizer.warmup_steps = "exponential_stages", steps, warmup
    # the peak is an argument of the compiled function: the schedule must take a traced array
    return jax.jit(lambda peak, count: learning_rate_schedule(peak, c)(count))


@pytest.mark.parametrize("steps,ends", [
    (9840, [3, 12, 39, 120, 363, 1092, 3279]),  # 3 updates per pass: the paper at budget 0.001, exactly
    (1000, [round(Fraction(1000 * p, 3280)) for p in PASSES[:7]]),  # 0.30, 1.22, 3.96, ...: no halves to round
])
def test_exponential_stages_match_the_closed_form_at_every_boundary(steps, ends):
    lr = _schedule(steps)
    peak = jnp.float32(3e-3)
    for i, end in enumerate(ends):
        for count in (end - 1, end):  # the last update of stage i and the first of stage i + 1
            stage = i if count < end else i + 1
            expected = 3e-3 * 10 ** (-stage / 7)
            np.testing.assert_allclose(float(lr(peak, jnp.int32(count))), expected, rtol=1e-6)
    np.testing.assert_allclose(float(lr(peak, jnp.int32(0))), 3e-3 if ends[0] > 0 else 3e-3 * 10 ** (-1 / 7),
                               rtol=1e-6)
    np.testing.assert_allclose(float(lr(peak, jnp.int32(steps - 1))), 3e-4, rtol=1e-6)
    # The fractions of the run in each stage are the paper's 3^i / 3280 (up to rounding).
    counts = np.asarray(jax.vmap(lambda c: lr(peak, c))(jnp.arange(steps)))
    sizes = [np.count_nonzero(np.isclose(counts, 3e-3 * 10 ** (-i / 7), rtol=1e-6)) for i in range(8)]
    np.testing.assert_allclose(sizes, [steps * 3 ** i / 3280 for i in range(8)], atol=1)


def test_exponential_stages_start_after_the_warmup():
    lr = _schedule(9840 + 100, warmup=100)
    peak = jnp.float32(1e-3)
    np.testing.assert_allclose(float(lr(peak, jnp.int32(50))), 0.5e-3, rtol=1e-6)  # linear warmup
    np.testing.assert_allclose(float(lr(peak, jnp.int32(100 + 2))), 1e-3, rtol=1e-6)
    np.testing.assert_allclose(float(lr(peak, jnp.int32(100 + 3))), 1e-3 * 10 ** (-1 / 7), rtol=1e-6)


# --- the tanh VAE ---------------------------------------------------------------------------------

@pytest.mark.parametrize("activation,fn", [("relu", lambda a: np.maximum(a, 0)), ("tanh", np.tanh)])
def test_vae_hidden_units_against_a_numpy_forward(activation, fn):
    steps = _vae(activation=activation)
    V, p = steps.nets["vae"], steps.init_state(0).params["vae"]
    x = _bits()
    mean, logvar = V.apply({"params": p}, jnp.asarray(x), method=V.encode)
    dense = lambda h, layer: h @ np.asarray(layer["kernel"], np.float64) + np.asarray(layer["bias"], np.float64)
    h = x.reshape(8, -1).astype(np.float64)
    for i in range(2):
        h = fn(dense(h, p[f"enc_{i}"]))
    out = dense(h, p["posterior"])
    np.testing.assert_allclose(np.asarray(mean), out[:, :3], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(logvar), out[:, 3:], rtol=1e-5, atol=1e-6)


def test_default_activation_is_relu_and_others_are_refused():
    assert base_config().model.activation == "relu"
    assert _vae().nets["vae"].activation == "relu"
    c = base_config()
    c.model.activation = "gelu"
    with pytest.raises(ConfigError, match=r"^model.activation='gelu' is not accepted; accepted: relu, tanh$"):
        validate(c)


# --- the experiment -------------------------------------------------------------------------------

def _experiment(name="vae_iwae_mnist"):
    spec = importlib.util.spec_from_file_location(f"experiment_{name}", REPO / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_experiment_settings_steps_and_published_numbers():
    exp = _experiment()
    c = exp.get_config()
    validate(c)
    assert c.train.steps == 9840 == c.eval.every and c.eval.iwae_k == 5000 and c.eval.num_examples == 10_000
    assert exp.get_config("budget=1").train.steps == 9_840_000  # 3,280 passes over 60,000 digits, batch 20
    assert (c.model.hidden, c.model.depth, c.model.latent_dim, c.model.activation) == (200, 2, 50, "tanh")
    assert (c.optimizer.b1, c.optimizer.b2, c.optimizer.eps, c.data.batch_size) == (0.9, 0.999, 1e-4, 20)
    variants = exp.get_sweep()
    sweep.check_unique(variants)
    assert [sweep.setting_name(v) for v in variants] == list(exp.PUBLISHED)
    assert {sweep.setting_name(v) for v in exp.get_sweep("seeds=3")} == set(exp.PUBLISHED)
    assert len(exp.get_sweep("seeds=3")) == 18
    for v in variants:
        cfg = sweep.apply(c, v)
        validate(cfg)
        method, k = sweep.setting_name(v).split("-k")
        assert (cfg.loss.elbo_samples, cfg.loss.iwae_k) == ((int(k), 1) if method == "VAE" else (1, int(k)))
        assert list(exp.PUBLISHED[sweep.setting_name(v)]) == ["vae_likelihood/test_nll_iwae_nats"]
    assert exp.PUBLISHED["IWAE-k50"]["vae_likelihood/test_nll_iwae_nats"] == 84.78
    assert [sweep.run_name(v) for v in _experiment("vae_mnist").get_sweep()] == [f"seed={s}" for s in range(5)]
