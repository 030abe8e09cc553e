"""The GAN step of a class-conditional model (model.num_classes > 0, objectives/gan.py): the labels of
the batch and the drawn labels of the generated batch reach G, D and the penalties; AC-GAN's class
loss against float64 numpy cross-entropies; the logit fast path is the general path; one step on 8
devices equals one device. References are computed outside the step from the definitions (the key
folds of gan_jax/keys.py), with controls that show each comparison can fail."""

import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from state_compare import device_zero, state_tree, summing_update, update_difference

from gan_jax import keys, models, parallel
from gan_jax.config import base_config
from gan_jax.objectives import build_steps
from gan_jax.objectives.base import to_model_range
from gan_jax.objectives.labels import BatchLabels

K, SHAPE, BATCH, LATENT = 4, (8, 8, 1), 16, 8
fold = jax.random.fold_in


def _config(**fields):
    c = base_config()
    c.objective, c.data.batch_size = "gan", BATCH
    c.model.name, c.model.latent_dim, c.model.num_classes = "mlp_gan", LATENT, K
    c.model.generator_width = c.model.discriminator_width = 32
    c.optimizer.learning_rate = 1e-3
    for field, value in fields.items():
        section, name = field.split(".")
        c[section][name] = value
    return c


def _builder(c, axis_name=None):
    model_cfg = ml_collections.ConfigDict(c.model.to_dict())
    model_cfg.axis_name = axis_name
    return build_steps(c, models.build(model_cfg, SHAPE), SHAPE, None, False, axis_name=axis_name)


def _batch(n_critic=1, seed=0):
    """(images uint8 (n_critic, BATCH, 8, 8, 1): a pattern per class, their labels (n_critic, BATCH) int32)."""
    rng = np.random.RandomState(seed)
    patterns = (rng.rand(K, *SHAPE) > 0.5).astype(np.uint8) * 255
    labels = rng.randint(0, K, (n_critic, BATCH)).astype(np.int32)
    return patterns[labels], labels


def _softplus(x):
    return np.logaddexp(0.0, np.asarray(x, np.float64))


def _cross_entropy(logits, labels) -> float:
    """Mean -log softmax(logits)[label] in float64."""
    logits = np.asarray(logits, np.float64)
    log_z = np.log(np.sum(np.exp(logits - logits.max(-1, keepdims=True)), -1)) + logits.max(-1)
    return float(np.mean(log_z - logits[np.arange(len(labels)), labels]))


def _first_update(builder, state, images):
    """What the step's first update draws, from the definitions: its key, the model-range real batch,
    the generated batch's labels (uniform over the global batch, fold GENERATED_LABELS) and latents."""
    key = fold(fold(state.key, state.step), keys.CRITIC_UPDATE)
    real = to_model_range(jnp.asarray(images[0]))
    fake_labels = jax.random.randint(fold(key, keys.GENERATED_LABELS), (BATCH,), 0, K, jnp.int32)
    z = jax.random.normal(fold(key, keys.LATENT), (BATCH, LATENT))
    return key, real, fake_labels, z


def _d_logits(builder, state, x, labels, key):
    return builder.nets["discriminator"].apply({"params": state.params["discriminator"]}, x, labels=labels,
                                               train=True, rngs={"dropout": key})


@pytest.mark.parametrize("conditioning,rule,generated_labels", [("concat", "alternating", "uniform"),
                                                                ("projection", "simultaneous", "uniform"),
                                                                ("projection", "alternating", "real")])
def test_the_step_judges_real_and_generated_images_with_their_labels(conditioning, rule, generated_labels):
    """d_loss (at the initial parameters, under either rule) and g_loss (there too under the simultaneous
    rule, its logit fast path) of one step against the non-saturating losses computed from D(x, y) on
    the real batch with the batch's labels and on G(z, y') with the generated batch's labels y': drawn
    uniformly (train.generated_labels='uniform'), or the real batch's own ('real', R3GAN's pairing);
    controls: the real images judged with other labels, and a generated batch of other labels."""
    builder = _builder(_config(**{"model.discriminator_conditioning": conditioning, "train.update_rule": rule,
                                  "train.generated_labels": generated_labels}))
    state = builder.init_state(0)
    images, labels = _batch()
    _, metrics = jax.jit(builder.train_step)(state, (images, labels))
    key, real, fake_labels, z = _first_update(builder, state, images)
    if generated_labels == "real":
        assert not np.array_equal(fake_labels, labels[0])  # the uniform draw would differ
        fake_labels = jnp.asarray(labels[0])

    def losses(real_labels, drawn):
        G = builder.nets["generator"]
        fake = G.apply({"params": state.params["generator"], "batch_stats": state.batch_stats["generator"]}, z,
                       labels=drawn, train=True, mutable=["batch_stats"])[0]
        r = _d_logits(builder, state, real, real_labels, fold(key, keys.D_REAL))
        f = _d_logits(builder, state, fake, drawn, fold(key, keys.D_FAKE))
        return np.mean(_softplus(-r)) + np.mean(_softplus(f)), np.mean(_softplus(-f))

    d_loss, g_loss = losses(labels[0], fake_labels)
    np.testing.assert_allclose(metrics["d_loss"], d_loss, rtol=1e-5)
    if rule == "simultaneous":  # the alternating rule's G loss is the updated D's
        np.testing.assert_allclose(metrics["g_loss"], g_loss, rtol=1e-5)
    assert abs(losses((labels[0] + 1) % K, fake_labels)[0] - d_loss) > 1e-3
    assert abs(losses(labels[0], (fake_labels + 1) % K)[1] - g_loss) > 1e-3


def test_acgan_class_losses_are_the_cross_entropies_weighted_by_the_step_hyperparameters():
    """A D with a class head (discriminator_conditioning='auxiliary'): D's objective is d_loss +
    w_real CE(real) + w_fake CE(generated), G's g_loss + w_g CE(generated), the cross-entropies of the
    class logits D sows, against float64 numpy; the weights are hyperparameter arrays of the step,
    logged apart. Controls: zero weights leave the adversarial losses; other labels give other CEs."""
    c = _config(**{"model.discriminator_conditioning": "auxiliary", "loss.class_weight_real": 0.3,
                   "loss.class_weight_fake": 0.7, "loss.class_weight_generator": 0.5})
    builder = _builder(c)
    assert builder.class_head and not builder.logit_fast_path
    hp = builder.hyperparameters()
    assert {k: float(hp[k]) for k in hp if k.startswith("class_")} == pytest.approx(
        {"class_weight_real": 0.3, "class_weight_fake": 0.7, "class_weight_generator": 0.5})
    state = builder.init_state(0)
    images, labels = _batch()
    key, real, fake_labels, z = _first_update(builder, state, images)
    fake = jnp.asarray(np.random.RandomState(3).uniform(-1, 1, (BATCH, *SHAPE)), jnp.float32)
    batch_labels = BatchLabels(jnp.asarray(labels[0]), fake_labels)
    p_d, d_stats = state.params["discriminator"], state.batch_stats["discriminator"]

    def judged(x, y, k):
        logits, sown = builder.nets["discriminator"].apply({"params": p_d}, x, labels=y, train=True,
                                                           rngs={"dropout": k}, mutable=["intermediates"])
        class_logits = sown["intermediates"]["AuxiliaryClassifier_0"]["class_logits"][0]
        return np.asarray(logits, np.float64), _cross_entropy(class_logits, np.asarray(y))

    r, ce_real = judged(real, labels[0], fold(key, keys.D_REAL))
    f, ce_fake = judged(fake, fake_labels, fold(key, keys.D_FAKE))
    d_adv, g_adv = np.mean(_softplus(-r)) + np.mean(_softplus(f)), np.mean(_softplus(-f))
    total, (metrics, _) = builder.discriminator_objective(p_d, d_stats, None, real, fake, key, 0, hp,
                                                          labels=batch_labels)
    np.testing.assert_allclose([metrics["d_class_real"], metrics["d_class_fake"], metrics["d_loss"]],
                               [ce_real, ce_fake, d_adv], rtol=1e-5)
    np.testing.assert_allclose(total, d_adv + 0.3 * ce_real + 0.7 * ce_fake, rtol=1e-5)
    g_total, g_metrics = builder.generator_objective(fake, p_d, d_stats, None, real, key, labels=batch_labels, hp=hp)
    np.testing.assert_allclose([g_metrics["g_class"], g_metrics["g_loss"]], [ce_fake, g_adv], rtol=1e-5)
    np.testing.assert_allclose(g_total, g_adv + 0.5 * ce_fake, rtol=1e-5)
    # Controls.
    zero = {**hp, "class_weight_real": np.float32(0), "class_weight_fake": np.float32(0)}
    np.testing.assert_allclose(builder.discriminator_objective(p_d, d_stats, None, real, fake, key, 0, zero,
                                                               labels=batch_labels)[0], d_adv, rtol=1e-5)
    assert abs(judged(real, (labels[0] + 1) % K, fold(key, keys.D_REAL))[1] - ce_real) > 1e-3
    # The step logs them.
    _, step_metrics = jax.jit(builder.train_step)(state, (images, labels))
    assert {"d_class_real", "d_class_fake", "g_class"} <= set(step_metrics)


@pytest.mark.parametrize("penalty,side", [("r1", "real"), ("r2", "fake")])
def test_penalties_judge_d_conditioned_on_the_labels_of_their_batch(penalty, side):
    """R1 = 1/2 mean ||grad_x D(x, y)||^2 on the real batch with its labels, R2 on the generated batch
    with the drawn ones, each example's gradient taken alone (a second code path: vmap of grad of one
    example). Control: the same batch with the other batch's labels."""
    builder = _builder(_config(**{"model.discriminator_conditioning": "projection",
                                  "loss.penalties": f"{penalty}:1"}))
    state = builder.init_state(0)
    images, labels = _batch()
    key, real, fake_labels, _ = _first_update(builder, state, images)
    fake = jnp.asarray(np.random.RandomState(4).uniform(-1, 1, (BATCH, *SHAPE)), jnp.float32)
    p_d = state.params["discriminator"]
    _, (metrics, _) = builder.discriminator_objective(p_d, {}, None, real, fake, key, 0, builder.hyperparameters(),
                                                      labels=BatchLabels(jnp.asarray(labels[0]), fake_labels))
    x, y, other = (real, jnp.asarray(labels[0]), fake_labels) if side == "real" else (fake, fake_labels, labels[0])

    def half_mean_squared_gradient(y):
        one = lambda xi, yi: _d_logits(builder, state, xi[None], yi[None], fold(key, keys.D_PENALTY))[0]
        grads = np.asarray(jax.vmap(jax.grad(one))(x, jnp.asarray(y)), np.float64).reshape(BATCH, -1)
        return 0.5 * np.mean(np.sum(grads ** 2, axis=-1))

    expected = half_mean_squared_gradient(y)
    np.testing.assert_allclose(metrics[f"penalty_{penalty}"], expected, rtol=1e-4)
    assert abs(half_mean_squared_gradient(other) - expected) > 1e-3 * expected


def _train(builder, steps, batches):
    state = builder.init_state(0)
    step = jax.jit(builder.train_step)
    for i in range(steps):
        state, metrics = step(state, jax.tree.map(lambda a, i=i: a[i], batches))
    return state, jax.device_get(metrics)


def _relative(a, b) -> float:
    flat = lambda s: np.concatenate([np.ravel(x) for x in jax.tree.leaves(s.params)])
    return float(np.linalg.norm(flat(a) - flat(b)) / np.linalg.norm(flat(b)))


def test_the_logit_fast_path_is_the_general_path_for_a_conditional_model():
    """The simultaneous rule on a projection D: its logit-space shortcut and the objectives themselves
    give the same updates within rounding; the control, a 10% other learning rate, does not."""
    images, labels = _batch(n_critic=3)
    batches = (images[:, None], labels[:, None])  # 3 steps of one update each
    c = _config(**{"model.discriminator_conditioning": "projection", "train.update_rule": "simultaneous"})
    fast, general, control = _builder(c), _builder(c), _builder(_config(**{
        "model.discriminator_conditioning": "projection", "train.update_rule": "simultaneous",
        "optimizer.learning_rate": 1.1e-3}))
    general.logit_fast_path = False
    assert fast.logit_fast_path
    a, ma = _train(fast, 3, batches)
    b, mb = _train(general, 3, batches)
    cc, _ = _train(control, 3, batches)
    same, other = _relative(a, b), _relative(cc, a)
    print(f"fast vs general path: {same:.1e}; learning rate 1.1e-3 vs 1e-3: {other:.1e}")
    assert same < 1e-5 < 1e-3 < other
    np.testing.assert_allclose([ma["d_loss"], ma["g_loss"]], [mb["d_loss"], mb["g_loss"]], rtol=1e-5)


# One conditional step on 8 devices x 2 examples against 16 examples on one device, as in test_steps.py:
# Adam's eps far above |g| makes its first updates proportional to the gradients.
PMAP_TOLERANCE = 1e-4
PROPORTIONAL_ADAM = {"optimizer.learning_rate": 1.0, "optimizer.eps": 10.0}


def _locally_drawn_labels(self, key, local_batch):
    """The bug the device test must see: each device draws its own generated labels."""
    return jax.random.randint(fold(key, jax.lax.axis_index(self.axis_name)), (local_batch,), 0, self.num_classes)


def test_a_conditional_step_under_pmap_equals_one_device():
    """n_critic = 2, BatchNorm in G (statistics over the global batch), an AC-GAN class head and an R1
    penalty: 8 devices step as one. Controls: gradients summed over devices, and generated labels
    drawn per device instead of over the global batch."""
    c = _config(**{"model.discriminator_conditioning": "auxiliary", "model.generator_batch_norm": True,
                   "train.n_critic": 2, "loss.penalties": "r1:1", **PROPORTIONAL_ADAM})
    single = _builder(c)
    batch = _batch(n_critic=2)
    s0 = single.init_state(0)
    s1, m1 = jax.jit(single.train_step)(s0, batch)
    initial, reference = state_tree(s0), state_tree(s1)
    summing, local = _builder(c, parallel.PMAP_AXIS), _builder(c, parallel.PMAP_AXIS)
    summing.update = types.MethodType(summing_update, summing)
    local.generated_labels = types.MethodType(_locally_drawn_labels, local)
    out = {}
    for name, builder in (("pmap", _builder(c, parallel.PMAP_AXIS)), ("summed", summing), ("local labels", local)):
        sp, mp = jax.pmap(builder.train_step, axis_name=parallel.PMAP_AXIS)(
            parallel.pmap_replicate(s0), jax.tree.map(lambda a: parallel.pmap_split(a, 1), batch))
        out[name] = update_difference(state_tree(device_zero(sp)), reference, initial), mp
        print(f"8 devices ({name}) vs 1: {out[name][0][0]:.2e} ({out[name][0][1]})")
    (diff, _), mp = out["pmap"]
    assert diff < PMAP_TOLERANCE
    assert out["summed"][0][0] > 10 * PMAP_TOLERANCE and out["local labels"][0][0] > 10 * PMAP_TOLERANCE
    for name in ("g_class", "d_class_real", "penalty_r1"):
        np.testing.assert_allclose(np.asarray(mp[name])[0], m1[name], rtol=1e-4)
