"""Discriminator penalties against their definitions: closed-form input gradients written out in
float64 numpy with the random draws redone from fold_in(key, id), a critic that exposes a per-pixel
interpolation weight, central finite differences w.r.t. the critic's parameters, and batch splits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_consistency import _numpy_t

from gan_jax import penalties
from gan_jax.errors import ConfigError

SHAPE = (2, 3)  # two non-batch axes: the norm must run over both
IMAGE_SHAPE = (2, 3, 1)  # the same 6 values as an image (H, W, C), for the penalties that transform images
IDS = np.array([7, 3, 100, 42, 0, 9], np.int32)  # global ids, not positions
# The penalties of the critic contract (a scalar from the critic and the batches); the stateful ones
# (LeCam's, on D's logits with state) are tested against their definitions in their own files.
CRITIC_PENALTIES = sorted(set(penalties.PENALTIES) - set(penalties.STATEFUL))


def shape_of(name):
    return IMAGE_SHAPE if name in penalties.IMAGES_ONLY else SHAPE


def _batches(seed, shape=SHAPE):
    rng, n = np.random.RandomState(seed), len(IDS)
    return rng.uniform(-1, 1, (n,) + shape).astype(np.float32), rng.uniform(-1, 1, (n,) + shape).astype(np.float32)


# The draws, redone one example at a time (no vmap), as the definitions say: eps / alpha one U[0, 1)
# per example from fold_in(key, id); DRAGAN's alpha and noise from the two halves of split(fold_in(key, id)).
def _eps(key, i):
    return np.float64(jax.random.uniform(jax.random.fold_in(key, int(i)), (), jnp.float32))


def _dragan_draws(key, i, shape):
    k_alpha, k_noise = jax.random.split(jax.random.fold_in(key, int(i)))
    return (np.float64(jax.random.uniform(k_alpha, (), jnp.float32)),
            np.asarray(jax.random.uniform(k_noise, shape, jnp.float32), np.float64))


# Quadratic critic D(x) = sum_p w_p x_p^2 + b per example: grad_x D(x) = 2 w x.
def _np_grad(w, x):
    return 2 * w * x


def _np_norms(g):
    return np.sqrt((g.reshape(len(g), -1) ** 2).sum(1))


def _ref_wgan_gp(w, real, fake, key, ids):
    eps = np.array([_eps(key, i) for i in ids]).reshape(-1, 1, 1)
    x_hat = eps * real + (1 - eps) * fake
    return np.mean((_np_norms(_np_grad(w, x_hat)) - 1) ** 2)


def _ref_r1(w, real, fake, key, ids):
    return 0.5 * np.mean(_np_norms(_np_grad(w, real)) ** 2)


def _ref_r2(w, real, fake, key, ids):
    return 0.5 * np.mean(_np_norms(_np_grad(w, fake)) ** 2)


def _ref_dragan(w, real, fake, key, ids):
    std = np.std(real)  # population std of every value of the batch, as numpy's minibatch.std()
    out = []
    for x, i in zip(real, ids, strict=True):
        alpha, u = _dragan_draws(key, i, x.shape)
        x_hat = alpha * x + (1 - alpha) * (x + 0.5 * std * u)
        out.append((np.sqrt(np.sum(_np_grad(w, x_hat) ** 2)) - 1) ** 2)
    return np.mean(out)


def _np_critic(w, x, b=0.3):
    return (w * x**2).reshape(len(x), -1).sum(1) + b


def _ref_cr(w, real, fake, key, ids):  # T redone in numpy from the same draws (tests/test_consistency.py)
    return np.mean((_np_critic(w, real) - _np_critic(w, _numpy_t(real, key, ids))) ** 2)


def _ref_bcr(w, real, fake, key, ids):
    fake_t = _numpy_t(fake, jax.random.fold_in(key, 1), ids)
    return _ref_cr(w, real, fake, key, ids) + np.mean((_np_critic(w, fake) - _np_critic(w, fake_t)) ** 2)


_REFERENCES = {"wgan_gp": _ref_wgan_gp, "r1": _ref_r1, "r2": _ref_r2, "dragan": _ref_dragan, "cr": _ref_cr,
               "bcr": _ref_bcr}
PER_EXAMPLE = ["wgan_gp", "r1", "r2"]  # DRAGAN's std couples the batch: tested with axis_name below


def _quadratic_critic(w, b=0.3):
    return lambda x: jnp.sum(w * x**2, axis=tuple(range(1, x.ndim))) + b


@pytest.mark.parametrize("name", CRITIC_PENALTIES)
@pytest.mark.parametrize("seed", [0, 1])
def test_penalties_match_closed_forms(name, seed):
    assert name in _REFERENCES, f"penalty {name!r} has no float64 reference in _REFERENCES"
    real, fake = _batches(seed, shape_of(name))
    w = np.random.RandomState(seed + 10).uniform(0.2, 1.5, shape_of(name)).astype(np.float32)
    key = jax.random.PRNGKey(seed + 5)
    value = penalties.PENALTIES[name](_quadratic_critic(jnp.asarray(w)), jnp.asarray(real), jnp.asarray(fake),
                                      key, jnp.asarray(IDS))
    ref = _REFERENCES[name](w.astype(np.float64), real.astype(np.float64), fake.astype(np.float64), key, IDS)
    assert value.shape == ()
    np.testing.assert_allclose(value, ref, rtol=2e-5)


def test_hand_values_with_a_linear_critic():
    # D(x) = w.x + b with ||w|| = 1 everywhere: grad = w whatever the input, so the 1-centered penalties
    # are 0 and R1 = R2 = 1/2 ||w||^2 = 1/2; with ||w|| = 3: (3 - 1)^2 = 4 and 9/2.
    real, fake = map(jnp.asarray, _batches(3))
    key, ids = jax.random.PRNGKey(0), jnp.asarray(IDS)
    for scale, centered, half_sq in ((1.0, 0.0, 0.5), (3.0, 4.0, 4.5)):
        w = jnp.full(SHAPE, scale / np.sqrt(np.prod(SHAPE)))
        critic = lambda x, w=w: jnp.sum(w * x, axis=(1, 2)) - 2.0
        for name, expected in (("wgan_gp", centered), ("dragan", centered), ("r1", half_sq), ("r2", half_sq)):
            assert float(penalties.PENALTIES[name](critic, real, fake, key, ids)) == pytest.approx(expected, abs=1e-5)


def test_wgan_gp_interpolation_weight_is_one_per_example():
    # real = 1, fake = 0: with one eps per example every x_hat_i = eps_i is a constant image.
    # D(x) = c * sum_p (x_p - mean_p x)^2 has input gradient 2c (x - mean x), zero exactly on constant
    # images, so the penalty is (0 - 1)^2 = 1. A per-pixel eps makes x_hat_i non-constant: with c = 50
    # its gradient norms are far from 0 and from 1.
    n = len(IDS)
    real, fake = jnp.ones((n,) + SHAPE), jnp.zeros((n,) + SHAPE)

    def critic(c):
        return lambda x: c * jnp.sum(jnp.square(x - jnp.mean(x, axis=(1, 2), keepdims=True)), axis=(1, 2))

    def value(c):
        return penalties.wgan_gp(critic(c), real, fake, jax.random.PRNGKey(1), jnp.asarray(IDS))

    assert float(value(50.0)) == 1.0
    # A zero input gradient: the norm's derivative is taken as 0, not NaN, so D still gets a gradient.
    assert float(jax.grad(value)(50.0)) == 0.0


def _mlp_critic(theta):
    """A tiny MLP critic (flat params theta, 6 -> 3 -> 1, tanh): smooth, with non-trivial input gradients."""
    w1, b1, w2, b2 = theta[:18].reshape(6, 3), theta[18:21], theta[21:24], theta[24]
    return lambda x: jnp.tanh(x.reshape(len(x), -1) @ w1 + b1) @ w2 + b2


@pytest.mark.parametrize("name", CRITIC_PENALTIES)
def test_parameter_gradients_match_finite_differences(name):
    with jax.enable_x64(True):
        rng = np.random.RandomState(4)
        theta = jnp.asarray(rng.randn(25) * 0.8)
        real, fake = (jnp.asarray(b, jnp.float64) for b in _batches(4, shape_of(name)))
        key, ids = jax.random.PRNGKey(2), jnp.asarray(IDS)
        f = jax.jit(lambda t: penalties.PENALTIES[name](_mlp_critic(t), real, fake, key, ids))
        assert f(theta).dtype == jnp.float64
        grad = np.asarray(jax.jit(jax.grad(f))(theta))
        h = 1e-6
        fd = np.array([(float(f(theta.at[j].add(h))) - float(f(theta.at[j].add(-h)))) / (2 * h)
                       for j in range(len(theta))])
    assert np.abs(fd).max() > 1e-3  # the penalty does depend on the parameters
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", CRITIC_PENALTIES)
def test_no_gradient_reaches_the_batches(name):
    real, fake = map(jnp.asarray, _batches(5, shape_of(name)))
    critic = _mlp_critic(jnp.asarray(np.random.RandomState(5).randn(25), jnp.float32))
    fn = penalties.PENALTIES[name]
    g_real, g_fake = jax.grad(lambda r, f: fn(critic, r, f, jax.random.PRNGKey(0), jnp.asarray(IDS)),
                              argnums=(0, 1))(real, fake)
    assert not np.any(np.asarray(g_real)) and not np.any(np.asarray(g_fake))


@pytest.mark.parametrize("name", PER_EXAMPLE)
def test_split_and_permuted_batches_give_the_same_value(name):
    # Two devices with half the batch each and their own global ids: the mean of their penalties is
    # the whole batch's. Permuting the batch (with its ids) changes nothing: draws follow ids, not rows.
    real, fake = map(jnp.asarray, _batches(6))
    critic = _mlp_critic(jnp.asarray(np.random.RandomState(6).randn(25), jnp.float32))
    fn, key, ids = penalties.PENALTIES[name], jax.random.PRNGKey(3), jnp.asarray(IDS)
    whole = float(fn(critic, real, fake, key, ids))
    half = len(IDS) // 2
    halves = [float(fn(critic, real[s], fake[s], key, ids[s])) for s in (slice(None, half), slice(half, None))]
    assert np.mean(halves) == pytest.approx(whole, rel=1e-6)
    perm = np.random.RandomState(0).permutation(len(IDS))
    assert float(fn(critic, real[perm], fake[perm], key, ids[perm])) == pytest.approx(whole, rel=1e-6)
    if name == "wgan_gp":  # and the ids matter: the same rows with other ids draw other eps
        assert float(fn(critic, real, fake, key, ids + 1)) != pytest.approx(whole, rel=1e-3)


def test_dragan_std_across_devices_with_axis_name():
    # Two "devices" as a named vmap axis: with axis_name the std is the whole batch's and the mean of
    # the devices' penalties is the whole batch's value; without it each device uses its own std.
    real, fake = _batches(7)
    real[len(IDS) // 2:] *= 0.2  # the halves' stds differ
    real, fake = jnp.asarray(real), jnp.asarray(fake)
    critic = _mlp_critic(jnp.asarray(np.random.RandomState(7).randn(25), jnp.float32))
    key, ids = jax.random.PRNGKey(4), jnp.asarray(IDS)
    whole = float(penalties.dragan(critic, real, fake, key, ids))
    split = lambda a: a.reshape((2, -1) + a.shape[1:])

    def per_device(axis_name):
        fn = lambda r, f, i: penalties.dragan(critic, r, f, key, i, axis_name=axis_name)
        return float(jnp.mean(jax.vmap(fn, axis_name="devices")(split(real), split(fake), split(ids))))

    assert per_device("devices") == pytest.approx(whole, rel=1e-5)
    assert per_device(None) != pytest.approx(whole, rel=1e-3)


def test_parse_penalties_good_specs():
    assert penalties.parse_penalties("wgan_gp:10") == [("wgan_gp", 10.0, 1)]
    assert penalties.parse_penalties("r1:10:16,r2:1") == [("r1", 10.0, 16), ("r2", 1.0, 1)]
    assert penalties.parse_penalties(" r1 : 0.5 , dragan:1e1:1 ") == [("r1", 0.5, 1), ("dragan", 10.0, 1)]
    assert penalties.parse_penalties("") == [] and penalties.parse_penalties("  ") == []
    for name, _, _ in penalties.parse_penalties("r1:1,r2:1,wgan_gp:1,dragan:1"):
        assert penalties.get_penalty(name) is penalties.PENALTIES[name]


@pytest.mark.parametrize("spec", ["r1:", "x:1", "r1:-1", "r1:1:0", "r1:nan", "r1:inf", "r1:0", "r1", ":1",
                                  "r1:1:2:3", "r1:1:1.5", "r1:1:-2", "r1:ten", "r1:1,", "r1:1,r1:2", "r1:1;r2:1"])
def test_parse_penalties_refuses_bad_specs_in_one_line(spec):
    with pytest.raises(ConfigError) as info:
        penalties.parse_penalties(spec)
    msg = str(info.value)
    assert "\n" not in msg, msg
    for word in ("loss.penalties", repr(spec), "name:weight[:every]", "wgan_gp"):
        assert word in msg, (word, msg)


def test_get_penalty_unknown_name_one_line():
    with pytest.raises(ConfigError) as info:
        penalties.get_penalty("gp")
    msg = str(info.value)
    assert "\n" not in msg and "loss.penalties" in msg and "'gp' is unknown" in msg
    assert "accepted: " + ", ".join(sorted(penalties.PENALTIES)) in msg  # the registry's names


@pytest.mark.parametrize("update_index", range(8))
def test_weighted_sum_scales_lazy_penalties_by_their_interval(update_index):
    """loss.penalties='r1:2,r2:0.5:4,wgan_gp:10:2' with D(x) = w.x + b, ||w|| = 3 (R1 = R2 = 9/2,
    WGAN-GP = (3 - 1)^2 = 4): a lazy penalty (every k) counts k times its weight on updates i with
    i % k == 0 and nothing otherwise (Karras et al. 2020's lazy regularization)."""
    real, fake = map(jnp.asarray, _batches(3))
    w = jnp.full(SHAPE, 3.0 / np.sqrt(np.prod(SHAPE)))
    critic = lambda x: jnp.sum(w * x, axis=(1, 2)) - 2.0
    specs = penalties.parse_penalties("r1:2,r2:0.5:4,wgan_gp:10:2")
    on4, on2 = update_index % 4 == 0, update_index % 2 == 0
    for weights, (w_r1, w_r2, w_gp) in ((None, (2.0, 0.5, 10.0)), ({"r1": 3.0, "r2": 1.0, "wgan_gp": 0.0},
                                                                     (3.0, 1.0, 0.0))):
        total, metrics, _ = penalties.weighted_sum(specs, critic, real, fake, jax.random.PRNGKey(0), jnp.asarray(IDS),
                                                jnp.asarray(update_index), weights=weights)
        expected = w_r1 * 4.5 + (w_r2 * 4 * 4.5 if on4 else 0.0) + (w_gp * 2 * 4.0 if on2 else 0.0)
        assert float(total) == pytest.approx(expected, rel=1e-5)
        assert float(metrics["penalty_r1"]) == pytest.approx(4.5, rel=1e-5)
        assert float(metrics["penalty_r2"]) == pytest.approx(4.5 if on4 else 0.0, rel=1e-5, abs=1e-7)
        assert float(metrics["penalty_wgan_gp"]) == pytest.approx(4.0 if on2 else 0.0, rel=1e-5, abs=1e-6)
