"""DiffAugment: each transformation against a numpy re-implementation of the authors' code from the
same draws, differentiable, keyed per example; the GAN step applies it to every D forward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import models
from gan_jax.config import base_config
from gan_jax.errors import ConfigError
from gan_jax.objectives import build_steps
from gan_jax.ops import diff_augment as da

N, H, W, C = 5, 8, 8, 3
X = np.random.RandomState(0).uniform(-1, 1, (N, H, W, C)).astype(np.float32)
IDS = jnp.arange(10, 10 + N)
KEY = jax.random.PRNGKey(3)


def _uniform(key, shape=()):
    """Example i's uniform draw from fold_in(key, IDS[i])."""
    return np.asarray(jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(key, i), shape))(IDS))


def _randint(key, low, high):
    return np.asarray(jax.vmap(lambda i: jax.random.randint(jax.random.fold_in(key, i), (1,), low, high))(IDS))[:, 0]


def test_color_matches_the_reference():
    b, s, c = (_uniform(jax.random.fold_in(KEY, j)) for j in range(3))
    x = X.astype(np.float64) + (b[:, None, None, None] - 0.5)
    m = x.mean(axis=3, keepdims=True)
    x = (x - m) * (s[:, None, None, None] * 2) + m
    m = x.mean(axis=(1, 2, 3), keepdims=True)
    x = (x - m) * (c[:, None, None, None] + 0.5) + m
    np.testing.assert_allclose(np.asarray(da.color(jnp.asarray(X), KEY, IDS)), x, rtol=1e-5, atol=1e-5)


def test_translation_matches_the_reference():
    shift = int(H * 0.125 + 0.5)
    dy, dx = _randint(jax.random.fold_in(KEY, 0), -shift, shift + 1), _randint(jax.random.fold_in(KEY, 1), -shift,
                                                                                   shift + 1)
    expected = np.zeros_like(X)
    for n in range(N):
        for i in range(H):
            for j in range(W):
                if 0 <= i + dy[n] < H and 0 <= j + dx[n] < W:
                    expected[n, i, j] = X[n, i + dy[n], j + dx[n]]
    assert np.abs(dy).max() > 0 or np.abs(dx).max() > 0
    np.testing.assert_array_equal(np.asarray(da.translation(jnp.asarray(X), KEY, IDS)), expected)


def test_cutout_matches_the_reference_and_its_gradient_is_the_mask():
    size = int(H * 0.5 + 0.5)
    cy, cx = _randint(jax.random.fold_in(KEY, 0), 0, H + (1 - size % 2)), _randint(jax.random.fold_in(KEY, 1), 0,
                                                                                       W + (1 - size % 2))
    mask = np.ones((N, H, W, 1), np.float32)
    for n in range(N):  # the authors' clamped index grid
        for a in range(size):
            for b in range(size):
                mask[n, min(max(cy[n] + a - size // 2, 0), H - 1), min(max(cx[n] + b - size // 2, 0), W - 1)] = 0
    out = np.asarray(da.cutout(jnp.asarray(X), KEY, IDS))
    np.testing.assert_array_equal(out, X * mask)
    grad = jax.grad(lambda x: da.cutout(x, KEY, IDS).sum())(jnp.asarray(X))
    np.testing.assert_array_equal(np.asarray(grad), np.broadcast_to(mask, X.shape))


def test_draws_follow_the_example_ids_not_positions():
    policy = da.parse_policy("translation,cutout,color")
    whole = np.asarray(da.diff_augment(jnp.asarray(X), KEY, IDS, policy))
    halves = [np.asarray(da.diff_augment(jnp.asarray(X[s]), KEY, IDS[s], policy)) for s in (slice(0, 2), slice(2, N))]
    np.testing.assert_allclose(np.concatenate(halves), whole, rtol=1e-6, atol=1e-6)


def test_unknown_transformations_and_non_image_data_are_refused():
    with pytest.raises(ConfigError, match="data.diff_augment='flip': 'flip' is unknown; accepted"):
        da.parse_policy("flip")
    c = base_config()
    c.objective, c.model.name, c.data.diff_augment = "gan", "mlp_gan", "color"
    c.model.latent_dim, c.model.generator_width, c.model.discriminator_width = 2, 8, 8
    with pytest.raises(ConfigError, match="transforms images"):
        build_steps(c, models.build(c.model, (2,)), (2,), "ring8", False)


def test_the_gan_step_augments_every_discriminator_forward(monkeypatch):
    """Every D forward of the step (the critic update's real and generated batches, the penalty's
    critic, the generator update's) takes its input through DiffAugment, under both update rules,
    with penalties or without: counted while the step is traced. A control without the policy
    augments nothing; and D's output on the same batch and parameters differs from the plain step's."""
    from gan_jax.objectives import gan

    def builder(policy, rule="alternating", penalties=""):
        c = base_config()
        c.objective, c.data.batch_size, c.data.diff_augment = "gan", 8, policy
        c.model.name, c.model.latent_dim, c.model.generator_width, c.model.discriminator_width = "mlp_gan", 4, 16, 8
        c.train.update_rule, c.loss.penalties = rule, penalties
        return build_steps(c, models.build(c.model, (8, 8, 1)), (8, 8, 1), None, False)

    batch = (np.random.RandomState(1).rand(1, 8, 8, 8, 1) * 255).astype(np.uint8)
    calls = {"augment": 0, "forward": 0}
    real_augment = gan.diff_augment
    monkeypatch.setattr(gan, "diff_augment", lambda *a, **k: calls.__setitem__("augment", calls["augment"] + 1)
                        or real_augment(*a, **k))
    for rule, penalties, policy in [("alternating", "", "translation,cutout,color"),
                                    ("alternating", "r1:1", "translation,cutout,color"),
                                    ("simultaneous", "", "translation,cutout,color"),
                                    ("simultaneous", "r1:1", "translation,cutout,color"),
                                    ("alternating", "r1:1", "")]:
        steps = builder(policy, rule, penalties)
        discriminate = steps.discriminate
        counted = lambda *a, discriminate=discriminate, **k: calls.__setitem__("forward", calls["forward"] + 1) \
            or discriminate(*a, **k)
        monkeypatch.setattr(steps, "discriminate", counted)
        calls.update(augment=0, forward=0)
        jax.make_jaxpr(steps.train_step)(steps.init_state(0), batch)
        assert calls["forward"] >= 2, (rule, penalties)
        assert calls["augment"] == (calls["forward"] if policy else 0), (rule, penalties, policy, calls)
    plain, augmented = builder(""), builder("translation,cutout,color")
    _, first_plain = jax.jit(plain.train_step)(plain.init_state(0), batch)
    _, first_augmented = jax.jit(augmented.train_step)(augmented.init_state(0), batch)
    assert float(first_plain["d_real"]) != float(first_augmented["d_real"])  # same parameters, augmented input
