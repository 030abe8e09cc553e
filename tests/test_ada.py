"""Adaptive discriminator augmentation (gan_jax/ops/ada.py) against its definition: the pipeline on given
draws against a float64 numpy rewrite of the authors' matrices (their composition order, reflect padding,
the one-channel rule), p = 0 as the identity, draws keyed by example id (a permuted batch is the batch
permuted), the gates' and ranges' frequencies, the update of p against the heuristic written out, and in
the step: p kept in the train state and moved from the logged sign of D(real), and the refusals."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_steps import _builder, _fixed_batch

from gan_jax.errors import ConfigError
from gan_jax.ops import ada

# --- a float64 numpy rewrite of the authors' augment.py, on given draws ---------------------------

def _blit_ref(image, flip, k, shift):
    h, w, _ = image.shape
    cx, cy = (w - 1) / 2, (h - 1) / 2
    f = np.diag([1 - 2 * flip, 1, 1])  # scale2d_inv(1 - 2i, 1)
    t = -np.pi / 2 * k
    r = np.array([[np.cos(-t), -np.sin(-t), 0], [np.sin(-t), np.cos(-t), 0], [0, 0, 1]])  # rotate2d_inv(t)
    tr = np.array([[1, 0, -shift[0]], [0, 1, -shift[1]], [0, 0, 1]])  # translate2d_inv
    g_inv = f @ r @ tr  # G_inv = I @ xflip @ rot90 @ xint, as they compose it

    def reflect(i, n):  # numpy's 'reflect' padding, applied as often as needed
        while i < 0 or i > n - 1:
            i = -i if i < 0 else 2 * (n - 1) - i
        return i

    out = np.empty_like(image)
    for y in range(h):
        for x in range(w):
            sx, sy, _ = g_inv @ np.array([x - cx, y - cy, 1.0])
            out[y, x] = image[reflect(int(round(sy + cy)), h), reflect(int(round(sx + cx)), w)]
    return out


def _color_ref(image, b, c, flip, theta, s):
    v = np.array([1, 1, 1, 0]) / np.sqrt(3)
    eye, vv = np.eye(4), np.outer(v, v)
    m = eye.copy()
    m = np.array([[1, 0, 0, b], [0, 1, 0, b], [0, 0, 1, b], [0, 0, 0, 1]]) @ m
    m = np.diag([c, c, c, 1]) @ m
    m = (eye - 2 * vv * flip) @ m
    # rotate3d(v, theta): Rodrigues' formula around the unit luma axis
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    rot = eye.copy()
    rot[:3, :3] = np.eye(3) + np.sin(theta) * k + (1 - np.cos(theta)) * k @ k
    m = rot @ m
    m = (vv + (eye - vv) * s) @ m
    if image.shape[-1] == 3:
        return image @ m[:3, :3].T + m[:3, 3]
    mean = m[:3, :].mean(axis=0)
    return image * mean[:3].sum() + mean[3]


def _reference(x, prm):
    out = []
    for i in range(len(x)):
        p = {k: np.asarray(v[i], np.float64) for k, v in prm.items()}
        image = _blit_ref(x[i].astype(np.float64), int(p["xflip"]), int(p["rot90"]), p["shift"])
        if x.shape[-1] == 1:  # no hue or saturation on one channel
            p["hue"], p["saturation"] = 0.0, 1.0
        out.append(_color_ref(image, p["brightness"], p["contrast"], p["lumaflip"], p["hue"], p["saturation"]))
    return np.stack(out)


@pytest.mark.parametrize("shape", [(8, 8, 3), (7, 7, 1)])
def test_the_pipeline_matches_the_float64_rewrite_on_its_draws(shape):
    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 1, (24, *shape)).astype(np.float32)
    ids, key = jnp.arange(100, 124), jax.random.PRNGKey(5)
    got = np.asarray(ada.augment(jnp.asarray(x), key, ids, jnp.float32(1.0), "bc"))
    prm = jax.device_get(ada.parameters(key, ids, jnp.float32(1.0), shape))
    np.testing.assert_allclose(got, _reference(x, prm), rtol=1e-5, atol=1e-5)
    assert len(set(prm["rot90"].tolist())) > 1 and prm["xflip"].any() and np.abs(prm["shift"]).max() >= 1


def test_probability_zero_is_the_identity_and_draws_follow_example_ids():
    x = np.random.RandomState(1).uniform(-1, 1, (16, 8, 8, 3)).astype(np.float32)
    ids, key = jnp.arange(16) * 3 + 7, jax.random.PRNGKey(2)
    np.testing.assert_array_equal(np.asarray(ada.augment(jnp.asarray(x), key, ids, jnp.float32(0.0), "bc")), x)
    whole = np.asarray(ada.augment(jnp.asarray(x), key, ids, jnp.float32(0.5), "bc"))
    perm = np.random.RandomState(0).permutation(16)
    permuted = np.asarray(ada.augment(jnp.asarray(x[perm]), key, ids[perm], jnp.float32(0.5), "bc"))
    np.testing.assert_array_equal(permuted, whole[perm])
    assert not np.allclose(whole, x)


def test_the_gates_and_ranges_have_the_authors_frequencies():
    n, p = 20_000, 0.3
    prm = jax.device_get(ada.parameters(jax.random.PRNGKey(0), jnp.arange(n), jnp.float32(p), (32, 32, 3)))
    # A gated transform applies with probability p; x-flip then picks 1 of 2, rot90 1 of 4 (0 included).
    assert abs(np.mean(prm["xflip"] == 1) - p / 2) < 0.015
    assert abs(np.mean(prm["rot90"] != 0) - p * 3 / 4) < 0.015
    assert abs(np.mean(prm["brightness"] != 0) - p) < 0.015
    assert abs(np.mean(prm["contrast"] != 1) - p) < 0.015
    assert np.abs(prm["shift"]).max() == 4  # round(0.125 * 32)
    b = prm["brightness"][prm["brightness"] != 0]
    assert abs(b.std() - 0.2) < 0.01
    c = np.log2(prm["contrast"][prm["contrast"] != 1])
    assert abs(c.std() - 0.5) < 0.02
    h = prm["hue"][prm["hue"] != 0]
    assert h.min() >= -np.pi and h.max() <= np.pi and abs(h.std() - np.pi / np.sqrt(3)) < 0.05


def test_p_moves_by_the_heuristic():
    """interval 2, batch 8, kimg 0.04: a step of sign(r_t - 0.6) * 8 * 2 / 40 = 0.4, clamped at 0 only."""
    signs = [0.9, 0.7, 0.2, 0.4, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    state, expected, p, acc = ada.initial_state(), [], 0.0, []
    for step, r in enumerate(signs):
        state = ada.adjusted(ada.accumulated(state, jnp.float32(r)), jnp.int32(step), 2, 8, 0.6, 0.04)
        acc.append(r)
        if (step + 1) % 2 == 0:
            p, acc = max(p + np.sign(np.mean(acc) - 0.6) * 0.4, 0.0), []
        expected.append(p)
        assert float(state["p"]) == pytest.approx(p, abs=1e-6)
    assert expected == pytest.approx([0, 0.4, 0.4, 0.0, 0.0, 0.4, 0.4, 0.8, 0.8, 1.2], abs=1e-6)  # above 1: theirs


def _ada_builder(**overrides):
    return _builder(data__ada_target=0.6, data__ada_interval=1, data__ada_kimg=0.16, **overrides)


def test_the_step_keeps_p_in_the_train_state_and_moves_it_from_the_logged_sign():
    """interval 1, batch 16, kimg 0.16: p moves by 0.1 a step, up when D's mean sign on reals exceeds 0.6."""
    _, builder = _ada_builder()
    state, batch, step = builder.init_state(0), _fixed_batch(), jax.jit(builder.train_step)
    p = 0.0
    for _ in range(6):
        state, metrics = step(state, batch)
        p = max(p + np.sign(float(metrics["d_real_sign"]) - 0.6) * 0.1, 0.0)
        assert float(metrics["ada_p"]) == pytest.approx(p, abs=1e-6)
        assert float(state.batch_stats["discriminator"][ada.STATE]["p"]) == pytest.approx(p, abs=1e-6)
    assert bool(metrics["finite"])


def test_the_augmentation_reaches_d():
    """The same state but p: D's outputs on the real batch differ at p = 1 and not at p = 0."""
    _, builder = _ada_builder()
    start, batch = builder.init_state(0), _fixed_batch()

    def d_real(p):
        d = dict(start.batch_stats["discriminator"])
        d[ada.STATE] = {**d[ada.STATE], "p": jnp.float32(p)}
        state = start.replace(batch_stats={**start.batch_stats, "discriminator": d})
        return float(jax.jit(builder.train_step)(state, batch)[1]["d_real"])

    _, plain = _builder()
    reference = float(jax.jit(plain.train_step)(plain.init_state(0), batch)[1]["d_real"])
    assert d_real(0.0) == pytest.approx(reference, rel=1e-6)
    assert abs(d_real(1.0) - reference) > 1e-4


def test_ada_with_diffaugment_is_refused_in_one_line():
    with pytest.raises(ConfigError) as e:
        _ada_builder(data__diff_augment="translation")
    assert str(e.value).startswith("data.ada_target=0.6") and "\n" not in str(e.value)
