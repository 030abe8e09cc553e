"""Top-k generator updates (train.top_k; Sinha et al. 2020): the fraction's schedule against its closed
form, G's loss over the top k against the float64 references of tests/test_losses.py on that subset,
no gradient to the dropped samples, the step at fraction 1 equal to a plain step and different below it,
and the settings where k is undefined refused in one line."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_losses import _GAN_REFERENCES
from test_step_penalties import _ring_builder

from gan_jax import losses
from gan_jax.config import base_config
from gan_jax.errors import ConfigError

SEPARABLE = sorted(set(losses.GAN_LOSSES) - losses.BATCH_COUPLED - losses.PAIRED)


def test_the_fraction_decays_per_period_to_its_floor():
    steps = np.array([0, 999, 1000, 2500, 68_000, 69_000, 10**6])
    expected = np.maximum(0.99 ** (steps // 1000), 0.5)
    got = np.asarray(losses.top_k_fraction(jnp.asarray(steps, jnp.int32), 0.99, 0.5, 1000), np.float64)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize("name", SEPARABLE)
@pytest.mark.parametrize("fraction", [1.0, 0.5, 0.3])
def test_g_loss_is_the_reference_on_the_top_k(name, fraction):
    rng = np.random.RandomState(3)
    real, fake = rng.randn(7) * 2, rng.randn(10) * 2
    k = max(int(np.floor(fraction * 10)), 1)
    top = np.sort(fake)[::-1][:k]  # the k samples D scores highest
    got = losses.top_k_generator_loss(losses.GAN_LOSSES[name], jnp.asarray(real, jnp.float32),
                                      jnp.asarray(fake, jnp.float32), jnp.float32(fraction))
    np.testing.assert_allclose(float(got), _GAN_REFERENCES[name](real, top)[1], rtol=1e-5, atol=1e-6)
    grad = np.asarray(jax.grad(lambda f: losses.top_k_generator_loss(
        losses.GAN_LOSSES[name], jnp.asarray(real, jnp.float32), f, jnp.float32(fraction)))(
        jnp.asarray(fake, jnp.float32)))
    dropped = fake < top[-1]
    assert np.all(grad[dropped] == 0) and np.any(grad[~dropped] != 0)


def _builder(top_k):
    b = _ring_builder(steps_per_call=1)
    b.cfg.train.top_k = top_k
    return b


def test_the_step_at_fraction_one_is_the_plain_step_and_below_it_is_not():
    plain, top = _builder(False), _builder(True)
    start = plain.init_state(0)

    def after(builder, step):
        state, metrics = jax.jit(builder.train_step)(start.replace(step=np.int32(step)), None)
        return jax.device_get((state.params["generator"], state.opt_state["generator"])), metrics

    (p_plain, _), (p_top, m_top) = after(plain, 0), after(top, 0)
    assert float(m_top["top_k_fraction"]) == 1.0
    for a, b in zip(jax.tree.leaves(p_plain), jax.tree.leaves(p_top), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    (p_plain, _), (p_top, m_top) = after(plain, 10**6), after(top, 10**6)
    assert float(m_top["top_k_fraction"]) == 0.5
    # Adam's first moment is (1 - b1) * G's gradient: half the samples' terms are gone from it.
    gaps = [np.abs(a - b).max() for a, b in zip(jax.tree.leaves(p_plain), jax.tree.leaves(p_top), strict=True)]
    assert max(gaps) > 1e-4


@pytest.mark.parametrize("loss,mode,expected", [
    ("relativistic_pairing", "jit", r"^train.top_k=True needs G's loss as a mean over generated samples, and "
                                    r"loss.name='relativistic_pairing' couples them; accepted: one of hinge, "),
    ("non_saturating", "pmap", r"^train.top_k=True ranks the whole generated batch.*accepted: parallel.mode='jit'$"),
])
def test_top_k_where_k_is_undefined_is_refused(loss, mode, expected):
    c = base_config()
    c.train.top_k, c.loss.name = True, loss
    with pytest.raises(ConfigError, match=expected):
        losses.check_top_k(c.train, c.loss.name, "devices" if mode == "pmap" else None)
