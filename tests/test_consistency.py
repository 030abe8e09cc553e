"""Consistency regularization (CR, Zhang et al. 2020; bCR, Zhao et al. 2021) as penalties: T against a
numpy flip + reflection-padded shift of the same draws, the draws following the example ids, each
penalty against a float64 numpy value of a linear critic, and the image GAN step that trains with
'bcr:10' and feels its weight; refused on data that is not images."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import models, penalties
from gan_jax.config import base_config
from gan_jax.errors import ConfigError
from gan_jax.objectives import build_steps


def _images(n=6, h=16, w=16, c=3, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, h, w, c)).astype(np.float32)


def _numpy_t(x, key, ids):
    """flip_and_shift in numpy, from the draws of fold_in(key, id) made as the docstring says."""
    s = max(x.shape[1] // 8, 1)
    out = []
    for image, i in zip(np.asarray(x, np.float64), ids, strict=True):
        k_flip, k_shift = jax.random.split(jax.random.fold_in(key, int(i)))
        if bool(jax.random.bernoulli(k_flip)):
            image = image[:, ::-1]
        dy, dx = (int(v) for v in jax.random.randint(k_shift, (2,), 0, 2 * s + 1))
        padded = np.pad(image, ((s, s), (s, s), (0, 0)), mode="reflect")
        out.append(padded[dy:dy + image.shape[0], dx:dx + image.shape[1]])
    return np.stack(out)


def test_t_is_a_flip_and_a_reflection_padded_shift_drawn_per_example():
    x, key, ids = _images(8), jax.random.PRNGKey(1), np.arange(10, 18, dtype=np.int32)
    got = np.asarray(penalties.flip_and_shift(jnp.asarray(x), key, jnp.asarray(ids)))
    np.testing.assert_array_equal(got, _numpy_t(x, key, ids).astype(np.float32))
    assert not np.array_equal(got, x)
    perm = np.random.default_rng(2).permutation(8)  # a batch split or reordered draws the same per example
    np.testing.assert_array_equal(np.asarray(penalties.flip_and_shift(jnp.asarray(x[perm]), key, ids[perm])),
                                  got[perm])


def _linear_critic(seed):
    w = np.random.default_rng(seed).normal(size=(16 * 16 * 3,)).astype(np.float32)
    return (lambda x: jnp.reshape(x, (x.shape[0], -1)) @ w), w.astype(np.float64)


def test_cr_and_bcr_are_their_definitions_for_a_linear_critic():
    (critic, w), (fake_critic, w_fake) = _linear_critic(3), _linear_critic(4)
    real, fake, key, ids = _images(6, seed=5), _images(6, seed=6), jax.random.PRNGKey(7), np.arange(6, dtype=np.int32)
    flat = lambda a: a.reshape(a.shape[0], -1)  # noqa: E731
    cr_expected = np.mean((flat(real.astype(np.float64)) @ w - flat(_numpy_t(real, key, ids)) @ w) ** 2)
    fake_t = _numpy_t(fake, jax.random.fold_in(key, 1), ids)
    fake_expected = np.mean((flat(fake.astype(np.float64)) @ w_fake - flat(fake_t) @ w_fake) ** 2)
    cr = penalties.get_penalty("cr")(critic, jnp.asarray(real), jnp.asarray(fake), key, jnp.asarray(ids))
    bcr = penalties.get_penalty("bcr")(critic, jnp.asarray(real), jnp.asarray(fake), key, jnp.asarray(ids),
                                       fake_critic=fake_critic)
    np.testing.assert_allclose(float(cr), cr_expected, rtol=1e-4)
    np.testing.assert_allclose(float(bcr), cr_expected + fake_expected, rtol=1e-4)
    # Through weighted_sum (as the step calls it): bcr gets the generated batch's critic.
    term, metrics, _ = penalties.weighted_sum([("bcr", 10.0, 1)], critic, jnp.asarray(real), jnp.asarray(fake), key,
                                           jnp.asarray(ids), jnp.int32(0), fake_critic=fake_critic)
    np.testing.assert_allclose(float(metrics["penalty_bcr"]), float(penalties.get_penalty("bcr")(
        critic, jnp.asarray(real), jnp.asarray(fake), jax.random.fold_in(key, 0), jnp.asarray(ids),
        fake_critic=fake_critic)), rtol=1e-6)
    np.testing.assert_allclose(float(term), 10 * float(metrics["penalty_bcr"]), rtol=1e-6)


def _image_gan(penalty, shape=(28, 28, 1)):
    c = base_config()
    c.objective, c.model.name, c.data.batch_size, c.loss.penalties = "gan", "dcgan_tutorial", 8, penalty
    c.model.generator_width = c.model.discriminator_width = 8
    c.model.dropout_rate = 0.0
    return build_steps(c, models.build(c.model, shape), shape, None, False)


def test_the_image_gan_trains_with_bcr_and_its_weight_reaches_the_critic():
    steps = _image_gan("bcr:10")
    step = jax.jit(steps.train_step)
    batch = np.random.default_rng(3).integers(0, 256, (1, 8, 28, 28, 1), dtype=np.uint8)
    hp = steps.hyperparameters()
    state, metrics = step(steps.init_state(0), batch, hp)
    light, _ = step(steps.init_state(0), batch, {**hp, "penalty_bcr": np.float32(1e-3)})
    assert bool(metrics["finite"]) and float(metrics["penalty_bcr"]) > 0
    # Adam's first moment is (1 - b1) * D's gradient: the penalty's weight shows there.
    gaps = [np.abs(np.asarray(a) - np.asarray(b)).max() for a, b in
            zip(jax.tree.leaves(state.opt_state["discriminator"]), jax.tree.leaves(light.opt_state["discriminator"]),
                strict=True)]
    assert max(gaps) > 1e-4


@pytest.mark.parametrize("name", sorted(penalties.IMAGES_ONLY))
def test_image_penalties_are_refused_on_points(name):
    c = base_config()
    c.objective, c.model.name, c.loss.penalties = "gan", "mlp_gan", f"{name}:10"
    c.model.latent_dim, c.model.generator_width, c.model.discriminator_width = 2, 8, 8
    others = ", ".join(sorted(set(penalties.PENALTIES) - penalties.IMAGES_ONLY))  # the registry's, as the message
    assert {"dragan", "r1", "r2", "wgan_gp"} <= set(others.split(", "))
    with pytest.raises(ConfigError, match=rf"^loss.penalties='{name}:10': {name} transform images, and this data "
                                          rf"has examples of shape \(2,\); accepted: {others}$"):
        build_steps(c, models.build(c.model, (2,)), (2,), "ring8", False)
