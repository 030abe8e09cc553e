"""Losses and penalties inside the GAN step: every loss and penalty trains the ring GAN without a
non-finite value, a penalty's weight reaches D's gradient, lazy penalties run on every k-th D update,
and configurations the penalties cannot serve are refused in one line."""

import jax
import numpy as np
import pytest

from gan_jax import losses, models, penalties
from gan_jax.config import base_config
from gan_jax.errors import ConfigError
from gan_jax.objectives import build_steps


def _ring_builder(loss="non_saturating", penalty="", steps_per_call=100, n_critic=1, rule="alternating"):
    c = base_config()
    c.objective, c.data.name, c.data.source, c.data.batch_size = "gan", "ring8", "synthetic", 64
    c.model.name, c.model.latent_dim = "mlp_gan", 2
    c.model.generator_width, c.model.discriminator_width, c.model.maxout_pieces = 32, 16, 3
    c.loss.name, c.loss.penalties = loss, penalty
    if loss == "wasserstein":
        c.loss.clip = 0.05
    c.optimizer.learning_rate = 1e-3
    c.train.steps_per_call, c.train.n_critic, c.train.update_rule = steps_per_call, n_critic, rule
    return build_steps(c, models.build(c.model, (2,)), (2,), "ring8", False)


def _train(builder, calls):
    state, step = builder.init_state(0), jax.jit(builder.multi_step)
    history = []
    for _ in range(calls):
        state, metrics = step(state, None)
        history.append(jax.device_get(metrics))
    return state, {k: np.concatenate([h[k] for h in history]) for k in history[0]}


CASES = [(name, "") for name in sorted(losses.GAN_LOSSES)] + \
        [("non_saturating", f"{name}:10") for name in sorted(set(penalties.PENALTIES) - penalties.IMAGES_ONLY)]


@pytest.mark.parametrize("loss,penalty", CASES)
def test_every_loss_and_penalty_trains_the_ring_gan_for_200_steps(loss, penalty):
    state, metrics = _train(_ring_builder(loss, penalty), 2)
    assert metrics["finite"].all(), {k: v[~metrics["finite"]][:3] for k, v in metrics.items()}
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))
    # D(x) and D(G(z)) are logged as probabilities only where the loss reads D's output as a logit.
    probabilistic = loss in losses.PROBABILISTIC
    assert ("d_real" in metrics and "d_fake" in metrics) == probabilistic
    assert ("d_real_output" in metrics and "d_fake_output" in metrics) == (not probabilistic)
    if penalty:
        name = penalty.split(":")[0]
        assert np.all(metrics[f"penalty_{name}"] >= 0) and metrics[f"penalty_{name}"].max() > 0


def test_a_lazy_penalty_runs_on_every_kth_critic_update():
    # r1:10:3 with n_critic = 2: D updates 0, 1 | 2, 3 | 4, 5 ...; the logged value is the last update's
    # of each step (index 2s + 1), non-zero exactly when 3 divides it.
    builder = _ring_builder(penalty="r1:10:3", steps_per_call=12, n_critic=2)
    _, metrics = _train(builder, 1)
    active = metrics["penalty_r1"] > 0
    np.testing.assert_array_equal(active, (2 * np.arange(12) + 1) % 3 == 0)


def test_the_penalty_weight_reaches_the_critic_gradient():
    # A vanishing weight leaves the step as without the penalty; weight 100 changes D's update.
    plain, _ = _train(_ring_builder(steps_per_call=1), 1)
    tiny, _ = _train(_ring_builder(penalty="wgan_gp:1e-9", steps_per_call=1), 1)
    large, _ = _train(_ring_builder(penalty="wgan_gp:100", steps_per_call=1), 1)
    d = lambda s: np.concatenate([np.ravel(x) for x in jax.tree.leaves(s.params["discriminator"])])
    np.testing.assert_allclose(d(tiny), d(plain), rtol=0, atol=1e-6)
    assert np.abs(d(large) - d(plain)).max() > 1e-4


def _d_params(state):
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(state.params)])


def _relative(a, b) -> float:
    return float(np.linalg.norm(_d_params(a) - _d_params(b)) / np.linalg.norm(_d_params(b)))


def test_the_simultaneous_rule_through_the_objectives_equals_its_logit_space_fast_path():
    # Without a penalty the simultaneous rule pulls both losses back through one D forward; the general
    # path (what a penalty or an overridden objective needs) differentiates the D and G objectives
    # themselves: the same update within float rounding, while a 10% other learning rate is not.
    fast = _ring_builder(steps_per_call=5, rule="simultaneous")
    general = _ring_builder(steps_per_call=5, rule="simultaneous")
    general.logit_fast_path = False
    control = _ring_builder(steps_per_call=5, rule="simultaneous")
    control.cfg.optimizer.learning_rate = 1.1e-3
    assert fast.logit_fast_path
    a, ma = _train(fast, 2)
    b, mb = _train(general, 2)
    c, _ = _train(control, 2)
    same, other = _relative(a, b), _relative(c, a)
    print(f"fast vs general path: {same:.1e}; learning rate 1.1e-3 vs 1e-3: {other:.1e}")
    assert same < 1e-5 < 1e-3 < other
    np.testing.assert_allclose(ma["g_loss"], mb["g_loss"], rtol=1e-5)
    np.testing.assert_allclose(ma["d_loss"], mb["d_loss"], rtol=1e-5)


def test_a_penalty_under_the_simultaneous_rule_reaches_the_critic():
    plain, _ = _train(_ring_builder(steps_per_call=1, rule="simultaneous"), 1)
    penalized, metrics = _train(_ring_builder(penalty="r1:100", steps_per_call=1, rule="simultaneous"), 1)
    assert metrics["finite"].all() and metrics["penalty_r1"].min() > 0
    assert np.abs(_d_params(penalized) - _d_params(plain)).max() > 1e-4


def test_hyperparameters_are_arrays_one_compilation_serves_every_value():
    # Learning rates and penalty weights reach the step as arguments: changing them does not recompile,
    # and the result equals the step built from a config with those values.
    base = _ring_builder(penalty="r1:10", steps_per_call=3)
    other = _ring_builder(penalty="r1:0.5", steps_per_call=3)
    other.cfg.optimizer.learning_rate = 3e-4
    other_hp = other.hyperparameters()
    assert set(other_hp) == {"lr_generator", "lr_discriminator", "penalty_r1"}
    step = jax.jit(base.multi_step)
    state = base.init_state(0)
    a, _ = step(state, None, base.hyperparameters())
    b, _ = step(state, None, other_hp)
    assert step._cache_size() == 1
    reference, _ = jax.jit(other.multi_step)(other.init_state(0), None)
    np.testing.assert_allclose(_d_params(b), _d_params(reference), rtol=1e-6, atol=1e-7)
    assert np.abs(_d_params(a) - _d_params(b)).max() > 1e-5


@pytest.mark.parametrize("overrides,expected", [
    ({"bn": True}, "has BatchNorm in D"),
])
def test_penalties_that_cannot_be_served_are_refused(overrides, expected):
    c = base_config()
    c.objective, c.model.name, c.loss.penalties = "gan", "mlp_gan", "r1:10"
    c.model.latent_dim, c.model.generator_width, c.model.discriminator_width = 2, 8, 8
    if overrides.get("update_rule"):
        c.train.update_rule = overrides["update_rule"]
    if overrides.get("bn"):
        c.model.name = "dcgan"
        c.model.generator_width = c.model.discriminator_width = 4
    shape = (2,) if c.model.name == "mlp_gan" else (16, 16, 1)  # 16x16: a second D layer, with BatchNorm
    with pytest.raises(ConfigError, match=expected) as e:
        build_steps(c, models.build(c.model, shape), shape, "ring8" if shape == (2,) else None, False)
    assert str(e.value).startswith("loss.penalties='r1:10'") and "\n" not in str(e.value)


def test_a_loss_and_a_penalty_defined_outside_the_package_train(monkeypatch):
    """The README's extension examples: one function each, registered by name, then a config value."""
    import jax.numpy as jnp

    monkeypatch.setattr(losses, "GAN_LOSSES", dict(losses.GAN_LOSSES))
    monkeypatch.setattr(penalties, "PENALTIES", dict(penalties.PENALTIES))

    @losses.register_gan_loss("softplus_hinge")
    def softplus_hinge(real_logits, fake_logits):
        d_loss = jnp.mean(jax.nn.softplus(1 - real_logits)) + jnp.mean(jax.nn.softplus(1 + fake_logits))
        return d_loss, -jnp.mean(fake_logits)

    @penalties.register_penalty("r1_plus")
    def r1_plus(critic, real, fake, key, example_ids, *, axis_name=None):
        both = jnp.concatenate([real, fake])
        grads = jax.grad(lambda x: critic(x).sum())(both)
        return 0.5 * jnp.mean(jnp.sum(jnp.square(grads).reshape(len(both), -1), axis=1))

    _, metrics = _train(_ring_builder("softplus_hinge", "r1_plus:10", steps_per_call=20), 1)
    assert metrics["finite"].all() and metrics["penalty_r1_plus"].min() > 0


def _feature_matching_class():
    """The README's objective example, as written there."""
    import jax.numpy as jnp

    from gan_jax.objectives import register
    from gan_jax.objectives.gan import GanSteps

    @register("gan_feature_matching", nets=("generator", "discriminator"))
    class FeatureMatchingSteps(GanSteps):
        def generator_objective(self, fake, p_d, d_stats, sn_vectors, real, key):
            loss, metrics = super().generator_objective(fake, p_d, d_stats, sn_vectors, real, key)
            f_real = self.discriminate(p_d, d_stats, sn_vectors, real, key, features=True)[2]
            f_fake = self.discriminate(p_d, d_stats, sn_vectors, fake, key, features=True)[2]
            matching = jnp.sum((f_real.mean(0) - f_fake.mean(0)) ** 2)
            return loss + matching, {**metrics, "feature_matching": matching}

    return FeatureMatchingSteps


@pytest.mark.parametrize("rule", ["alternating", "simultaneous"])
def test_an_objective_defined_outside_the_package_trains_under_both_update_rules(monkeypatch, rule):
    """The README's objective example: a GAN variant overriding its generator objective, registered by
    name, then selected by config.objective. Its extra term moves G under either update rule (the
    simultaneous rule's logit-space shortcut would skip it) and is logged under its own name."""
    from gan_jax import objectives

    monkeypatch.setattr(objectives, "OBJECTIVES", dict(objectives.OBJECTIVES))
    feature_matching = _feature_matching_class()
    plain = _ring_builder(steps_per_call=5, rule=rule)
    c = plain.cfg.copy_and_resolve_references()
    c.objective = "gan_feature_matching"
    builder = build_steps(c, plain.nets, (2,), "ring8", False)
    assert isinstance(builder, feature_matching) and not builder.logit_fast_path
    state, metrics = _train(builder, 1)
    reference, plain_metrics = _train(plain, 1)
    again, _ = _train(_ring_builder(steps_per_call=5, rule=rule), 1)
    assert metrics["finite"].all() and metrics["feature_matching"].min() > 0
    assert "feature_matching" not in plain_metrics
    g = lambda s: np.concatenate([np.ravel(x) for x in jax.tree.leaves(s.params["generator"])])  # noqa: E731
    moved = float(np.linalg.norm(g(state) - g(reference)) / np.linalg.norm(g(reference)))
    print(f"{rule}: G feature matching vs plain {moved:.1e}, plain vs plain {np.abs(g(again) - g(reference)).max()}")
    assert np.array_equal(g(again), g(reference))  # the control: the same seed trains the same bits
    assert moved > 1e-3
    # Its first D update is the plain GAN's (only G's objective differs).
    np.testing.assert_allclose(metrics["d_loss"][0], plain_metrics["d_loss"][0], rtol=1e-6)
    if rule == "simultaneous":  # what the shortcut did: the subclass trained as the plain GAN
        skipping = build_steps(c, plain.nets, (2,), "ring8", False)
        skipping.logit_fast_path = True
        shortcut, shortcut_metrics = _train(skipping, 1)
        assert np.array_equal(g(shortcut), g(reference)) and "feature_matching" not in shortcut_metrics
