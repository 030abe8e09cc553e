"""The pure update steps: they lower their objectives, compile once, and do not depend on how a
run is split into calls."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from state_compare import device_zero, state_tree, summing_update, update_difference

from gan_jax import models
from gan_jax.config import base_config
from gan_jax.data.synthetic import sample_mixture
from gan_jax.objectives import build_steps
from gan_jax.objectives.base import apply_updates, learning_rate, make_optimizers


def _builder(objective="gan", **overrides):
    c = base_config()
    c.objective = objective
    c.data.batch_size = 16
    if objective == "vae":
        c.model.name, c.loss.name, c.model.latent_dim = "vae", "elbo", 4
        c.model.hidden = 64
        c.optimizer.learning_rate, c.optimizer.b1 = 1e-3, 0.9
    else:
        c.model.name = "mlp_gan"
        c.model.latent_dim = 8
        c.model.generator_width = 32
        c.model.discriminator_width = 32
        c.optimizer.learning_rate = 1e-3
    for k, v in overrides.items():
        section, name = k.split("__")
        c[section][name] = v
    shape = (8, 8, 1)
    nets = models.build(c.model, shape)
    return c, build_steps(c, nets, shape, None, False)


def _fixed_batch(n=16):
    """(1, n, 8, 8, 1) uint8: black-and-white copies of 4 random patterns (learnable structure)."""
    rng = np.random.RandomState(0)
    patterns = (rng.rand(4, 8, 8, 1) > 0.5).astype(np.uint8) * 255
    return patterns[np.arange(n) % 4][None]


def _run(builder, steps, batch):
    state = builder.init_state(0)
    step = jax.jit(builder.train_step)
    history = []
    for _ in range(steps):
        state, metrics = step(state, batch)
        history.append(jax.device_get(metrics))
    return state, history


def test_vae_step_lowers_negative_elbo_on_a_fixed_batch():
    _, b = _builder("vae")
    _, h = _run(b, 100, _fixed_batch())
    assert np.mean([m["loss"] for m in h[-5:]]) < 0.5 * np.mean([m["loss"] for m in h[:5]])


def test_discriminator_update_lowers_its_loss():
    # A frozen generator (learning rate ~0): the discriminator alone learns to separate the fixed batch.
    _, b = _builder(optimizer__learning_rate=1e-12, optimizer__discriminator_learning_rate=1e-3)
    _, h = _run(b, 30, _fixed_batch())
    assert np.mean([m["d_loss"] for m in h[-5:]]) < 0.7 * np.mean([m["d_loss"] for m in h[:5]])


def test_generator_update_lowers_its_loss():
    # A frozen discriminator: the generator alone learns to raise D(G(z)).
    _, b = _builder(optimizer__learning_rate=1e-3, optimizer__discriminator_learning_rate=1e-12)
    _, h = _run(b, 30, _fixed_batch())
    assert np.mean([m["g_loss"] for m in h[-5:]]) < 0.8 * np.mean([m["g_loss"] for m in h[:5]])


@pytest.mark.parametrize("update_rule", ["alternating", "simultaneous"])
def test_weight_clipping_bounds_every_critic_parameter(update_rule):
    # WGAN: after each D update every D parameter lies in [-clip, clip]; G is left alone.
    clip = 0.01
    _, b = _builder(loss__name="wasserstein", loss__clip=clip, train__update_rule=update_rule)
    init = b.init_state(0)
    state, _ = _run(b, 3, _fixed_batch())
    d = np.concatenate([np.ravel(x) for x in jax.tree.leaves(state.params["discriminator"])])
    assert np.abs(d).max() <= clip + 1e-7
    assert np.isclose(np.abs(d).max(), clip)  # the initialization exceeds the bound: clipping happened
    assert max(np.abs(x).max() for x in jax.tree.leaves(init.params["discriminator"])) > clip
    g = np.concatenate([np.ravel(x) for x in jax.tree.leaves(state.params["generator"])])
    assert np.abs(g).max() > clip


@pytest.mark.parametrize("objective", ["gan", "vae"])
def test_step_compiles_once(objective):
    _, b = _builder(objective)
    state = b.init_state(0)
    traces = []

    def counted(s, x):
        traces.append(1)
        return b.train_step(s, x)

    step = jax.jit(counted, donate_argnums=0)
    for _ in range(4):
        state, _ = step(state, _fixed_batch())
    assert len(traces) == 1 and step._cache_size() == 1


def test_steps_per_call_does_not_change_the_run():
    """Step N draws from fold_in(key, N): 4 calls of 1 step equal 2 calls of 2 steps (lax.scan)."""
    rng = np.random.RandomState(1)
    batches = (rng.rand(4, 1, 16, 8, 8, 1) * 255).astype(np.uint8)
    c1, b1 = _builder(train__steps_per_call=1)
    c2, b2 = _builder(train__steps_per_call=2)
    s1, s2 = b1.init_state(0), b2.init_state(0)
    f1, f2 = jax.jit(b1.multi_step), jax.jit(b2.multi_step)
    for i in range(4):
        s1, _ = f1(s1, batches[i:i + 1])
    for i in range(0, 4, 2):
        s2, _ = f2(s2, batches[i:i + 2])
    assert int(s1.step) == int(s2.step) == 4
    for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-7)


def test_ring_gan_step_on_synthetic_data():
    c = base_config()
    c.objective, c.data.batch_size, c.model.name, c.model.latent_dim = "gan", 64, "mlp_gan", 2
    c.model.generator_width, c.model.discriminator_width, c.model.maxout_pieces = 16, 8, 3
    nets = models.build(c.model, (2,))
    b = build_steps(c, nets, (2,), "ring8", False)
    state, metrics = jax.jit(b.train_step)(b.init_state(0), None)
    assert int(state.step) == 1 and bool(metrics["finite"])
    points = np.asarray(sample_mixture("ring8", jax.random.PRNGKey(0), 1000))
    np.testing.assert_allclose(np.linalg.norm(points, axis=1), 1.0, atol=0.05)


def test_discriminator_schedule_advances_once_per_step():
    # A linear decay over 10 steps with 5 D updates per step: D's rate falls with the steps (its 5
    # updates of a step share one rate), as G's, instead of reaching 0 after 10 D updates.
    c = base_config()
    c.train.steps, c.train.n_critic, c.optimizer.schedule = 10, 5, "linear"
    optimizers = make_optimizers(c, ("generator", "discriminator"))
    params = {"w": jnp.zeros(3)}
    rates = {}
    for name, updates in (("generator", 10), ("discriminator", 50)):
        state, used = optimizers[name].init(params), []
        for _ in range(updates):
            _, state = apply_updates(params, state, {"w": jnp.ones(3)}, optimizers[name], np.float32(1.0))
            used.append(float(learning_rate(state)))
        rates[name] = np.asarray(used)
    np.testing.assert_allclose(rates["generator"], 1 - np.arange(10) / 10, rtol=1e-6)
    np.testing.assert_allclose(rates["discriminator"], np.repeat(rates["generator"], 5), rtol=1e-6)


def test_simultaneous_update_takes_both_gradients_at_the_same_parameters():
    # Second code path: the alternating update's D step is the simultaneous D step (same batches and
    # keys), and with D frozen (learning rate 1e-30: no float32 change) its G step takes the gradient at
    # the same D as the simultaneous step does.
    batch = _fixed_batch()
    _, simultaneous = _builder(train__update_rule="simultaneous")
    _, alternating = _builder()
    _, alternating_frozen_d = _builder(optimizer__discriminator_learning_rate=1e-30)
    s0 = simultaneous.init_state(0)
    s_sim, m_sim = jax.jit(simultaneous.train_step)(s0, batch)
    s_alt, m_alt = jax.jit(alternating.train_step)(s0, batch)
    s_frozen, m_frozen = jax.jit(alternating_frozen_d.train_step)(s0, batch)
    close = lambda a, b: jax.tree.all(jax.tree.map(lambda x, y: np.allclose(x, y, rtol=1e-5, atol=1e-7), a, b))
    assert close(s_frozen.params["discriminator"], s0.params["discriminator"])  # (zero biases move by 1e-30)
    assert close(s_sim.params["discriminator"], s_alt.params["discriminator"])
    assert close(s_sim.params["generator"], s_frozen.params["generator"])
    assert not close(s_sim.params["generator"], s0.params["generator"])  # the generator did move
    # ... and differs from the alternating G step, which sees the updated D.
    assert not close(s_sim.params["generator"], s_alt.params["generator"])
    np.testing.assert_allclose(m_sim["d_loss"], m_alt["d_loss"], rtol=1e-6)
    np.testing.assert_allclose(m_sim["g_loss"], m_frozen["g_loss"], rtol=1e-6)


def test_simultaneous_update_needs_one_critic_step():
    from gan_jax.config import validate
    from gan_jax.errors import ConfigError

    c = base_config()
    c.train.update_rule, c.train.n_critic = "simultaneous", 5
    with pytest.raises(ConfigError, match=r"train.n_critic=5 .*simultaneous.*accepted: 1"):
        validate(c)
    c.train.update_rule = "both"
    with pytest.raises(ConfigError, match=r"update_rule='both' is not accepted; accepted: alternating, simultaneous"):
        validate(c)


# One step on 8 devices x 2 examples against 16 examples on one: their changes from the initial state,
# element by element (parameters, BatchNorm statistics, Adam's moments: the first moment is the
# device-averaged gradient), differ by float rounding only; the control sums the gradients over devices.
# Adam's eps far above |g| makes its first updates lr / eps * g (an SGD step of 0.1 g), so a gradient's
# scale reaches the parameters too, and near-zero gradients summed in another order stay near zero
# instead of becoming whole steps lr * sign(g).
PMAP_TOLERANCE = 1e-4
PROPORTIONAL_ADAM = {"optimizer__learning_rate": 1.0, "optimizer__eps": 10.0}


def _pmap_builder(c):
    import ml_collections

    from gan_jax import parallel

    model_cfg = ml_collections.ConfigDict(c.model.to_dict())
    model_cfg.axis_name = parallel.PMAP_AXIS
    return build_steps(c, models.build(model_cfg, (8, 8, 1)), (8, 8, 1), None, False, axis_name=parallel.PMAP_AXIS)


def _summing_gradients(builder):
    """`builder` with gradients summed over devices instead of averaged: the bug the pmap tests must see."""
    builder.update = types.MethodType(summing_update, builder)
    return builder


def _pmap_against_one_device(c, single, batch):
    """(difference, control difference, one-device metrics, device 0's metrics): update_difference of the
    8-device step and of its gradient-summing control from the one-device step."""
    from gan_jax import parallel

    s0 = single.init_state(0)
    s1, m1 = jax.jit(single.train_step)(s0, batch)
    initial, reference = state_tree(s0), state_tree(s1)
    out = []
    for builder in (_pmap_builder(c), _summing_gradients(_pmap_builder(c))):
        sp, mp = jax.pmap(builder.train_step, axis_name=parallel.PMAP_AXIS)(parallel.pmap_replicate(s0),
                                                                           parallel.pmap_split(batch, 1))
        out.append((update_difference(state_tree(device_zero(sp)), reference, initial), mp))
    (diff, where), mp = out[0]
    (control, control_where), _ = out[1]
    print(f"\n8 devices vs 1: {diff:.2e} ({where}); gradients summed: {control:.2e} ({control_where})")
    assert diff < PMAP_TOLERANCE and control > 10 * PMAP_TOLERANCE
    return m1, jax.tree.map(lambda x: np.asarray(x)[0], mp)


def test_simultaneous_update_under_pmap_equals_one_device():
    # BatchNorm in G: its statistics over the global batch are part of the comparison.
    c, single = _builder(train__update_rule="simultaneous", model__generator_batch_norm=True, **PROPORTIONAL_ADAM)
    m1, mp = _pmap_against_one_device(c, single, _fixed_batch())
    np.testing.assert_allclose(mp["g_loss"], m1["g_loss"], rtol=1e-5)


@pytest.mark.parametrize("penalty", ["wgan_gp:10", "dragan:10"])
def test_several_critic_updates_with_a_penalty_under_pmap_equal_one_device(penalty):
    """n_critic = 2, WGAN loss with a penalty: per-example draws keyed by global example ids (and DRAGAN's
    batch std averaged over devices) make 8 devices x 2 examples the 16-example single-device step."""
    c, single = _builder(train__n_critic=2, loss__name="wasserstein", loss__penalties=penalty, **PROPORTIONAL_ADAM)
    batch = np.concatenate([_fixed_batch(), _fixed_batch()[:, ::-1]])  # (n_critic, 16, 8, 8, 1)
    m1, mp = _pmap_against_one_device(c, single, batch)
    name = penalty.split(":")[0]
    assert float(m1[f"penalty_{name}"]) > 0
    np.testing.assert_allclose(mp[f"penalty_{name}"], m1[f"penalty_{name}"], rtol=1e-4)
