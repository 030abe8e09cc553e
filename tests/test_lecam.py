"""LeCam regularization (Tseng et al. 2021) against its definition: values and anchors against a float64
numpy rewrite of the official code (TF's zero-debiased moving average, updated before use), its gradient
against the closed form (through the logits, none through the anchors), a batch split over devices, a
lazy interval, and in the step: the anchors kept in the train state equal the moving average of the
logged mean logits, under both update rules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_step_penalties import _ring_builder, _train

from gan_jax import penalties

DECAY = 0.99
LECAM = penalties.PENALTIES["lecam"]


def _reference(batches):
    """float64, one update at a time: the biased averages, then the anchors a = biased / (1 - 0.99^t)."""
    biased, values = np.zeros(2), []
    for t, (r, f) in enumerate(batches, 1):
        biased = DECAY * biased + (1 - DECAY) * np.array([r.mean(), f.mean()])
        a_real, a_fake = biased / (1 - DECAY ** t)
        values.append(np.mean(np.maximum(r - a_fake, 0) ** 2) + np.mean(np.maximum(a_real - f, 0) ** 2))
    return np.array(values), biased


def _batches(n=6, size=16, seed=0):
    """Logits whose means drift, so that both hinges are active on some examples and not on others."""
    rng = np.random.RandomState(seed)
    return [((rng.randn(size) + 0.3 * t).astype(np.float32), (rng.randn(size) - 0.2 * t).astype(np.float32))
            for t in range(n)]


def _call(state, r, f, axis_name=None):
    return LECAM(None, None, None, None, None, axis_name=axis_name, state=state, logits=(r, f))


def test_values_and_anchors_match_the_float64_reference():
    batches, state, got = _batches(), penalties.STATEFUL["lecam"](), []
    for r, f in batches:
        value, state = _call(state, jnp.asarray(r), jnp.asarray(f))
        got.append(float(value))
    ref, biased = _reference([(r.astype(np.float64), f.astype(np.float64)) for r, f in batches])
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    np.testing.assert_allclose([float(state["real"]), float(state["fake"])], biased, rtol=1e-5)
    assert float(state["updates"]) == len(batches)
    assert 0 < ref.min()  # the hinges were active


def test_the_gradient_reaches_the_logits_and_not_the_anchors():
    batches, state = _batches(), penalties.STATEFUL["lecam"]()
    for r, f in batches[:3]:
        _, state = _call(state, jnp.asarray(r), jnp.asarray(f))
    r, f = batches[3]
    grad_r, grad_f = jax.grad(lambda r, f: _call(state, r, f)[0], argnums=(0, 1))(jnp.asarray(r), jnp.asarray(f))
    _, biased = _reference([(a.astype(np.float64), b.astype(np.float64)) for a, b in batches[:4]])
    a_real, a_fake = biased / (1 - DECAY ** 4)
    np.testing.assert_allclose(np.asarray(grad_r), 2 * np.maximum(r - a_fake, 0) / len(r), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(np.asarray(grad_f), -2 * np.maximum(a_real - f, 0) / len(f), rtol=1e-4, atol=1e-7)
    assert np.count_nonzero(np.asarray(grad_r)) not in (0, len(r))  # some examples inside the hinge, some not


def test_a_batch_split_over_devices_gives_the_whole_batch_value_and_anchors():
    devices = jax.local_device_count()
    r, f = _batches(size=2 * devices)[2]
    state = penalties.STATEFUL["lecam"]()
    whole, whole_state = _call(state, jnp.asarray(r), jnp.asarray(f))
    split = jax.pmap(lambda r, f: _call(state, r, f, axis_name="d"), axis_name="d")
    values, states = split(r.reshape(devices, -1), f.reshape(devices, -1))
    np.testing.assert_allclose(np.mean(np.asarray(values)), float(whole), rtol=1e-5)  # the step pmeans D's loss
    for side in ("real", "fake", "updates"):
        np.testing.assert_allclose(np.asarray(states[side]), float(whole_state[side]), rtol=1e-6)


@pytest.mark.parametrize("update_index", [0, 1])
def test_a_lazy_lecam_keeps_its_state_on_skipped_updates(update_index):
    r, f = (jnp.asarray(x) for x in _batches()[0])
    state = {"lecam": penalties.STATEFUL["lecam"]()}
    total, metrics, new = penalties.weighted_sum([("lecam", 0.3, 2)], None, None, None, jax.random.PRNGKey(0),
                                                 None, jnp.int32(update_index), states=state, logits=(r, f))
    active = update_index % 2 == 0
    assert float(new["lecam"]["updates"]) == float(active)
    assert (float(metrics["penalty_lecam"]) > 0) == active
    np.testing.assert_allclose(float(total), 0.3 * 2 * float(metrics["penalty_lecam"]), rtol=1e-6)


@pytest.mark.parametrize("rule", ["alternating", "simultaneous"])
def test_the_train_state_holds_the_moving_average_of_the_logged_logits(rule):
    """hinge logs D's mean raw outputs (d_real_output, d_fake_output) of each step's one D update: the
    anchors' biased sums after 30 steps are their moving average, computed here from the log."""
    builder = _ring_builder("hinge", "lecam:0.3", steps_per_call=30, rule=rule)
    state, metrics = _train(builder, 1)
    assert metrics["finite"].all() and metrics["penalty_lecam"].max() > 0
    kept = jax.device_get(state.batch_stats["discriminator"][penalties.STATE]["lecam"])
    assert float(kept["updates"]) == 30
    biased = np.zeros(2)
    for means in zip(metrics["d_real_output"].astype(np.float64), metrics["d_fake_output"].astype(np.float64),
                     strict=True):
        biased = DECAY * biased + (1 - DECAY) * np.array(means)
    np.testing.assert_allclose([kept["real"], kept["fake"]], biased, rtol=1e-4, atol=1e-7)


def test_runs_without_a_stateful_penalty_keep_their_train_state_tree():
    """Old workdirs resume: no penalty state appears unless a stateful penalty is configured."""
    assert penalties.STATE not in _ring_builder("hinge", "r1:1").init_state(0).batch_stats["discriminator"]
    assert penalties.STATE in _ring_builder("hinge", "lecam:0.3").init_state(0).batch_stats["discriminator"]
