"""objectives/base.py OPTIMIZERS and the 'exponential' schedule against float64 numpy loops of their
definitions (pylearn2's Momentum rule, MomentumAdjustor and ExponentialDecay)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gan_jax.config import base_config, validate
from gan_jax.errors import ConfigError
from gan_jax.objectives.base import apply_updates, learning_rate, make_optimizers

PEAK, FACTOR, FLOOR = 0.1, 1.3, 0.02
M0, M1, START, SATURATE = 0.5, 0.7, 2, 6


def momentum_config():
    c = base_config()
    c.optimizer.name, c.optimizer.schedule, c.optimizer.learning_rate = "momentum", "exponential", PEAK
    c.optimizer.decay_factor, c.optimizer.min_learning_rate = FACTOR, FLOOR
    c.optimizer.momentum, c.optimizer.final_momentum = M0, M1
    c.optimizer.momentum_start, c.optimizer.momentum_saturate = START, SATURATE
    validate(c)
    return c


def reference(params: np.ndarray, grads: list[np.ndarray]) -> tuple[np.ndarray, list[float]]:
    """pylearn2: v <- m_t v - lr_t g; p <- p + v; lr_t = max(peak / factor^t, floor); m_t linear from M0
    at START to M1 at SATURATE. Returns the parameters and the learning rates used."""
    p, v, rates = params.astype(np.float64), np.zeros_like(params, np.float64), []
    for t, g in enumerate(grads):
        lr = max(PEAK / FACTOR**t, FLOOR)
        m = M0 + (M1 - M0) * min(max(t - START, 0) / (SATURATE - START), 1.0)
        v = m * v - lr * g
        p = p + v
        rates.append(lr)
    return p, rates


def test_momentum_optimizer_is_pylearn2s_rule():
    rng = np.random.default_rng(0)
    params, grads = rng.normal(size=(3, 4)), [rng.normal(size=(3, 4)) for _ in range(12)]
    optimizer = make_optimizers(momentum_config(), ("generator",))["generator"]
    p, state, rates = jnp.asarray(params, jnp.float32), None, []
    state = optimizer.init(p)
    for g in grads:
        p, state = apply_updates(p, state, jnp.asarray(g, jnp.float32), optimizer, jnp.float32(PEAK))
        rates.append(float(learning_rate(state)))
    expected, expected_rates = reference(params, grads)
    np.testing.assert_allclose(rates, expected_rates, rtol=1e-6)
    assert min(expected_rates) == FLOOR  # the floor was reached
    np.testing.assert_allclose(np.asarray(p), expected, rtol=1e-5, atol=1e-6)
    # Control: optax's trace (the learning rate scales the whole velocity) ends elsewhere.
    control = optax.inject_hyperparams(optax.sgd)(
        learning_rate=lambda t: jnp.maximum(PEAK / FACTOR**t, FLOOR), momentum=M0)
    q, s = jnp.asarray(params, jnp.float32), None
    s = control.init(q)
    for g in grads:
        u, s = control.update(jnp.asarray(g, jnp.float32), s, q)
        q = optax.apply_updates(q, u)
    assert np.abs(np.asarray(q) - expected).max() > 100 * 1e-5


def test_adam_is_the_default_and_unchanged():
    c = base_config()
    assert c.optimizer.name == "adam"
    optimizer = make_optimizers(c, ("generator",))["generator"]
    reference_adam = optax.adam(c.optimizer.learning_rate, c.optimizer.b1, c.optimizer.b2, c.optimizer.eps)
    p = q = jnp.ones((5,))
    s, r = optimizer.init(p), reference_adam.init(q)
    for i in range(3):
        g = jnp.arange(5.0) * (i + 1)
        p, s = apply_updates(p, s, g, optimizer, jnp.float32(c.optimizer.learning_rate))
        u, r = reference_adam.update(g, r, q)
        q = optax.apply_updates(q, u)
    np.testing.assert_array_equal(np.asarray(p), np.asarray(q))


@pytest.mark.parametrize("field,value,accepted", [("optimizer.name", "sgd", "adam, momentum"),
                                                  ("optimizer.decay_factor", 0.9, ">= 1"),
                                                  ("optimizer.final_momentum", 1.0, "in [0, 1)")])
def test_bad_optimizer_fields_are_refused(field, value, accepted):
    c = base_config()
    section, name = field.split(".")
    c[section][name] = value
    with pytest.raises(ConfigError, match=re.escape(f"{field}={value!r} is not accepted; accepted: ") + ".*"
                       + re.escape(accepted)):
        validate(c)


def test_momentum_trains_under_jit():
    c = momentum_config()
    optimizer = make_optimizers(c, ("generator",))["generator"]
    step = jax.jit(lambda p, s: apply_updates(p, s, 2 * p, optimizer, jnp.float32(PEAK)))  # loss |p|^2
    p, s = jnp.ones((3,)), optimizer.init(jnp.ones((3,)))
    for _ in range(40):
        p, s = step(p, s)
    assert float(jnp.abs(p).max()) < 1e-2
