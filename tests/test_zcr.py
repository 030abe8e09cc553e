"""zCR, latent consistency regularization (Zhao et al. 2021), against its definition: D's term is the
mean squared difference of D's outputs on G(z) and G(T(z)) (float64 from the network's own forward),
G's is minus the mean squared difference of the two images, with its gradient in closed form; in the
step, a perturbation that vanishes (sigma -> 0) gives the plain step, a large one does not; 8 devices
agree with one (the perturbations are drawn per global example); both update rules train with it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from state_compare import state_tree, update_difference
from test_step_penalties import _ring_builder
from test_steps import PROPORTIONAL_ADAM, _builder, _fixed_batch, _pmap_against_one_device
from test_vae_objectives import _vaegan

from gan_jax import keys
from gan_jax.errors import ConfigError
from gan_jax.objectives.labels import NO_LABELS

ZCR = {"loss__zcr_discriminator": 5.0, "loss__zcr_generator": 0.5}
fold = jax.random.fold_in


def _images(seed, n=16):
    return jnp.asarray(np.random.RandomState(seed).uniform(-1, 1, (n, 8, 8, 1)), jnp.float32)


def test_the_discriminator_term_is_the_mean_squared_difference_of_its_outputs():
    _, builder = _builder(**ZCR)
    state, hp, key = builder.init_state(0), builder.hyperparameters(), jax.random.PRNGKey(1)
    real, fake, perturbed = _images(0), _images(1), _images(2)
    p_d = state.params["discriminator"]
    total, (metrics, _) = builder.discriminator_objective(p_d, {}, None, real, fake, key, 0, hp, perturbed=perturbed)
    d = lambda x: np.asarray(builder.nets["discriminator"].apply({"params": p_d}, x, train=False), np.float64)
    expected = np.mean((d(fake) - d(perturbed)) ** 2)
    assert expected > 0
    np.testing.assert_allclose(float(metrics["d_zcr"]), expected, rtol=1e-5)
    np.testing.assert_allclose(float(total), float(metrics["d_loss"]) + 5.0 * expected, rtol=1e-5)
    plain, (plain_metrics, _) = builder.discriminator_objective(p_d, {}, None, real, fake, key, 0, hp)
    assert "d_zcr" not in plain_metrics and float(plain) == pytest.approx(float(metrics["d_loss"]), rel=1e-6)


def test_the_generator_term_and_its_gradient_in_closed_form():
    _, builder = _builder(**ZCR)
    state, hp, key = builder.init_state(0), builder.hyperparameters(), jax.random.PRNGKey(1)
    real, fake, perturbed = _images(0), _images(1), _images(2)
    p_d = state.params["discriminator"]

    def objective(perturbed):
        return builder.generator_objective(fake, p_d, {}, None, real, key, NO_LABELS, hp=hp, perturbed=perturbed)

    (total, metrics), grad = jax.value_and_grad(objective, has_aux=True)(perturbed)
    f, p = np.asarray(fake, np.float64), np.asarray(perturbed, np.float64)
    np.testing.assert_allclose(float(metrics["g_zcr"]), np.mean((f - p) ** 2), rtol=1e-5)
    np.testing.assert_allclose(float(total), float(metrics["g_loss"]) - 0.5 * np.mean((f - p) ** 2), rtol=1e-5)
    # d/dp [-0.5 mean (f - p)^2] = (f - p) / size: G is pushed to keep its two images apart
    np.testing.assert_allclose(np.asarray(grad), (f - p) / f.size, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("rule", ["alternating", "simultaneous"])
def test_a_vanishing_perturbation_gives_the_plain_step_and_a_large_one_does_not(rule):
    batch = _fixed_batch()
    runs = {name: _builder(train__update_rule=rule, **PROPORTIONAL_ADAM, **extra)[1] for name, extra in
            {"plain": {}, "tiny": {**ZCR, "loss__zcr_sigma": 1e-6}, "large": {**ZCR, "loss__zcr_sigma": 1.0}}.items()}
    start = runs["plain"].init_state(0)
    out = {name: jax.jit(b.train_step)(start, batch) for name, b in runs.items()}
    ref = state_tree(out["plain"][0])
    tiny, _ = update_difference(state_tree(out["tiny"][0]), ref, state_tree(start))
    large, _ = update_difference(state_tree(out["large"][0]), ref, state_tree(start))
    print(f"\n{rule}: sigma 1e-6 against no zCR {tiny:.2e}; sigma 1: {large:.2e}")
    assert tiny < 1e-3 and large > 0.1
    assert 0 < float(out["large"][1]["d_zcr"]) and 0 < float(out["large"][1]["g_zcr"])
    assert float(out["tiny"][1]["g_zcr"]) < 1e-9


def test_under_pmap_equals_one_device():
    c, single = _builder(train__n_critic=2, **ZCR, **PROPORTIONAL_ADAM)
    m1, mp = _pmap_against_one_device(c, single, np.concatenate([_fixed_batch(), _fixed_batch()[:, ::-1]]))
    np.testing.assert_allclose([mp["d_zcr"], mp["g_zcr"]], [m1["d_zcr"], m1["g_zcr"]], rtol=1e-4)


@pytest.mark.parametrize("rule", ["alternating", "simultaneous"])
def test_the_ring_gan_trains_with_zcr(rule):
    builder = _ring_builder(rule=rule, steps_per_call=200)
    builder.cfg.loss.zcr_discriminator, builder.cfg.loss.zcr_generator = 5.0, 0.5
    builder = type(builder)(builder.cfg, builder.nets, builder.example_shape, builder.mixture)
    state, metrics = jax.jit(builder.multi_step)(builder.init_state(0), None)
    assert bool(metrics["finite"].all()) and float(metrics["g_zcr"][-1]) > 0
    assert keys.ZCR not in (keys.REAL, keys.LATENT, keys.D_REAL, keys.D_FAKE, keys.D_PENALTY, keys.PENALTIES,
                            keys.D_PRIOR, keys.PRIOR, keys.EMA_STATISTICS, keys.GENERATED_LABELS)


def test_vaegan_refuses_zcr():
    with pytest.raises(ConfigError, match=r"^loss.zcr_generator=0.5 is not served by objective='vaegan'"):
        _vaegan(zcr_generator=0.5)
