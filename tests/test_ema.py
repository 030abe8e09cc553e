"""The generator's exponential moving average (train.ema_decay, train.ema_start): its arithmetic, that
samples come from it, and that the plain parameters are still trained and saved beside it."""

import jax
import numpy as np

from gan_jax import models
from gan_jax.config import base_config
from gan_jax.objectives import build_steps
from gan_jax.objectives.gan import EMA


def _builder(decay, start=0, g_batch_norm=False):
    c = base_config()
    c.objective, c.data.name, c.data.source, c.data.batch_size = "gan", "ring8", "synthetic", 32
    c.model.name, c.model.latent_dim = "mlp_gan", 2
    c.model.generator_width, c.model.discriminator_width, c.model.maxout_pieces = 16, 8, 2
    c.optimizer.learning_rate = 1e-2  # large steps, so that the average visibly lags
    c.train.ema_decay, c.train.ema_start = decay, start
    c.model.generator_batch_norm = g_batch_norm
    return build_steps(c, models.build(c.model, (2,)), (2,), "ring8", False)


def _flat(tree):
    return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])


def test_the_average_follows_its_recursion_from_the_start_step():
    decay, start, steps = 0.9, 2, 6
    builder = _builder(decay, start)
    state, step = builder.init_state(0), jax.jit(builder.train_step)
    expected = _flat(state.params["generator"])
    np.testing.assert_array_equal(_flat(state.params[EMA]), expected)
    for n in range(1, steps + 1):
        state, _ = step(state, None)
        g = _flat(state.params["generator"])
        expected = g if n <= start else decay * expected + (1 - decay) * g  # float64 reference
        np.testing.assert_allclose(_flat(state.params[EMA]), expected, rtol=1e-5, atol=1e-6)
    assert np.abs(expected - g).max() > 1e-3  # the average lags the trained parameters


def test_the_plain_run_is_unchanged_and_samples_come_from_the_average():
    with_ema, without = _builder(0.99), _builder(0.0)
    a, b = with_ema.init_state(0), without.init_state(0)
    assert EMA not in b.params
    for _ in range(3):
        a, _ = jax.jit(with_ema.train_step)(a, None)
        b, _ = jax.jit(without.train_step)(b, None)
    np.testing.assert_array_equal(_flat(a.params["generator"]), _flat(b.params["generator"]))
    z = np.random.RandomState(0).randn(5, 2).astype(np.float32)
    G = with_ema.nets["generator"]
    from_average = G.apply({"params": a.params[EMA], "batch_stats": a.batch_stats[EMA]}, z, train=False)
    from_plain = G.apply({"params": a.params["generator"], "batch_stats": a.batch_stats["generator"]}, z, train=False)
    np.testing.assert_array_equal(np.asarray(with_ema.sample_fn()(a, z)), np.asarray(from_average))
    assert np.abs(np.asarray(from_average) - np.asarray(from_plain)).max() > 1e-4


def test_the_average_has_its_own_batch_norm_statistics():
    # G with BatchNorm: the averaged G's running statistics are gathered by the averaged G itself, in
    # training mode, on a latent batch of the step's own key fold; recomputed here step by step.
    import jax.numpy as jnp

    from gan_jax import keys

    builder = _builder(0.9, g_batch_norm=True)
    G = builder.nets["generator"]
    state, step = builder.init_state(0), jax.jit(builder.train_step)
    reference = state.batch_stats[EMA]
    for n in range(4):
        state, _ = step(state, None)
        z = jax.random.normal(jax.random.fold_in(jax.random.fold_in(state.key, n), keys.EMA_STATISTICS), (32, 2))
        _, new = G.apply({"params": state.params[EMA], "batch_stats": reference}, z, train=True,
                         mutable=["batch_stats"])
        reference = new["batch_stats"]
    np.testing.assert_allclose(_flat(state.batch_stats[EMA]), _flat(reference), rtol=1e-5, atol=1e-6)
    assert np.abs(_flat(state.batch_stats[EMA]) - _flat(state.batch_stats["generator"])).max() > 1e-4
    samples = builder.sample_fn()(state, jnp.ones((3, 2)))
    expected = G.apply({"params": state.params[EMA], "batch_stats": state.batch_stats[EMA]}, jnp.ones((3, 2)),
                       train=False)
    np.testing.assert_array_equal(np.asarray(samples), np.asarray(expected))
