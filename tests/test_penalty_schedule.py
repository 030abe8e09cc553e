"""loss.penalty_schedule: the factor on the penalties' weights against float64 closed forms (R3GAN's
cosine_decay_with_warmup among them), the step at train step t with a scheduled weight w equal to a
constant run with weight w * s(t), the factor logged, and runs that differ only in the schedule's
arrays (final scale, run length) sharing one program."""

import jax
import numpy as np
import pytest
from test_step_penalties import _ring_builder

from gan_jax import penalties, vectorized
from gan_jax.config import base_config, validate
from gan_jax.errors import ConfigError


def r3gan_cosine_decay(cur, base, total, final):
    """brownvc/R3GAN training_loop.cosine_decay_with_warmup without warmup or hold, in float64."""
    decay = 0.5 * (1 + np.cos(np.pi * cur / float(total)))
    return np.where(cur > total, final, base + (1 - decay) * (final - base))


@pytest.mark.parametrize("name", sorted(penalties.PENALTY_SCHEDULES))
def test_the_factor_is_its_closed_form(name):
    steps, end = 1000, 0.1
    at = np.array([0, 1, 250, 499, 500, 999, 1000, 1001, 5000])
    t = np.minimum(at / steps, 1.0)
    expected = {"constant": np.ones_like(t), "linear": 1 + (end - 1) * t,
                "cosine": end + (1 - end) * 0.5 * (1 + np.cos(np.pi * t))}[name]
    got = np.asarray(jax.jit(penalties.schedule_scale, static_argnums=0)(name, at, steps, end), np.float64)
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=1e-7)
    assert got[0] == 1.0 and (name == "constant" or abs(got[-1] - end) < 1e-7)


def test_cosine_is_r3gans_gamma_schedule():
    # R3GAN's CIFAR-10 preset: gamma 0.05 -> 0.005 over 20M images (batch 512: 39,063 steps).
    steps = 39_063
    at = np.array([0, 1, 5_000, 19_531, 30_000, 39_062, 39_063, 50_000])
    ours = 0.05 * np.asarray(penalties.schedule_scale("cosine", at, steps, 0.1), np.float64)
    np.testing.assert_allclose(ours, r3gan_cosine_decay(at * 512, 0.05, steps * 512, 0.005), rtol=3e-6)


def _builder(schedule, weight, steps=1000, final=0.1):
    b = _ring_builder(penalty=f"r1:{weight}", steps_per_call=1)
    b.cfg.loss.penalty_schedule, b.cfg.loss.penalty_final_scale, b.cfg.train.steps = schedule, final, steps
    return b


def test_a_scheduled_weight_at_step_t_is_the_constant_run_of_that_weight():
    w, t, steps = 10.0, 300, 1000
    scale = float(penalties.schedule_scale("cosine", t, steps, 0.1))
    scheduled, constant = _builder("cosine", w, steps), _builder("constant", w * scale)
    unscheduled = _builder("constant", w)
    start = scheduled.init_state(0).replace(step=np.int32(t))
    outs = {}
    for name, b in (("scheduled", scheduled), ("constant", constant), ("unscheduled", unscheduled)):
        state, metrics = jax.jit(b.train_step)(start, None)
        outs[name] = (jax.device_get((state.params, state.opt_state)), jax.device_get(metrics))
    # D's parameters and Adam's moments (the first is (1 - b1) * the gradient: the weight shows there
    # even where Adam's normalized first update hides it).
    leaves = lambda n: jax.tree.leaves([part["discriminator"] for part in outs[n][0]])  # noqa: E731
    for a, b in zip(leaves("scheduled"), leaves("constant"), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    gaps = [np.abs(a - b).max(initial=0) for a, b in zip(leaves("scheduled"), leaves("unscheduled"), strict=True)]
    assert max(gaps) > 1e-3
    np.testing.assert_allclose(outs["scheduled"][1]["penalty_scale"], scale, rtol=1e-6)
    assert "penalty_scale" not in outs["constant"][1]


def test_the_schedules_arrays_are_hyperparameters_and_its_name_is_compiled_in():
    a, b = base_config(), base_config()
    for c in (a, b):
        c.loss.penalties, c.loss.penalty_schedule = "r1:1", "cosine"
    b.loss.penalties, b.loss.penalty_final_scale, b.train.steps = "r1:5", 0.5, 77
    assert vectorized.program_key(a) == vectorized.program_key(b)
    b.loss.penalty_schedule = "linear"
    assert vectorized.program_key(a) != vectorized.program_key(b)


def test_a_schedule_without_penalties_or_of_an_unknown_name_is_refused():
    c = base_config()
    c.loss.penalty_schedule = "cosine"
    with pytest.raises(ConfigError, match=r"^loss.penalty_schedule='cosine' schedules the weights of loss.penalties"):
        validate(c)
    c.loss.penalties, c.loss.penalty_schedule = "r1:1", "step"
    with pytest.raises(ConfigError, match=r"^loss.penalty_schedule='step' is not accepted.*constant, linear, cosine"):
        validate(c)
