"""data.num_examples: a 2D mixture run trains on N fixed points (the PacGAN protocol), example j a
function of (the run's base key, j); 0 keeps fresh points every step."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gan_jax import keys, models, parallel
from gan_jax.config import base_config
from gan_jax.data.synthetic import sample_mixture, training_set_points
from gan_jax.errors import ConfigError
from gan_jax.objectives import build_steps

fold = jax.random.fold_in


def _config(num_examples: int, batch: int = 16, **train) -> ml_collections.ConfigDict:
    c = base_config()
    c.objective, c.data.name, c.data.source, c.data.batch_size = "gan", "ring8", "synthetic", batch
    c.data.num_examples = num_examples
    c.model.update({"name": "mlp_gan", "latent_dim": 2, "generator_width": 16, "discriminator_width": 8,
                    "maxout_pieces": 2})
    c.train.update(train)
    return c


def _builder(c: ml_collections.ConfigDict, axis_name: str | None = None):
    model_cfg = ml_collections.ConfigDict(c.model.to_dict())
    model_cfg.axis_name = axis_name
    return build_steps(c, models.build(model_cfg, (2,)), (2,), c.data.name, False, axis_name=axis_name)


def _reference_points(base_key, ids) -> np.ndarray:
    """Example j of the ring8 training set, written out from jax.random's primitives and the ring's
    geometry (not through sample_mixture): component ~ U{0..7}, mean (cos, sin)(2 pi k / 8), std 0.01."""
    out = []
    for j in ids:
        component_key, noise_key = jax.random.split(fold(fold(base_key, keys.TRAINING_SET), int(j)))
        k = int(jax.random.randint(component_key, (1,), 0, 8)[0])
        mean = np.array([math.cos(2 * math.pi * k / 8), math.sin(2 * math.pi * k / 8)])
        out.append(mean + 0.01 * np.asarray(jax.random.normal(noise_key, (1, 2)))[0])
    return np.stack(out)


def _recording(builder) -> list[tuple[np.ndarray, np.ndarray]]:
    """Makes `builder` record (base key, real batch) of every update its steps run, also inside jit,
    lax.scan and vmap (which records each run's slice), in no particular order."""
    seen, original = [], builder.real_examples

    def real_examples(key, batch_u8, base_key=None):
        x = original(key, batch_u8, base_key)
        jax.debug.callback(lambda k, v: seen.append((np.asarray(k), np.asarray(v))), base_key, x)
        return x

    builder.real_examples = real_examples
    return seen


def test_an_example_is_a_function_of_the_base_key_and_its_index():
    key = jax.random.PRNGKey(3)
    ids = jnp.asarray([4, 0, 4, 99_999])
    points = np.asarray(training_set_points("ring8", key, ids))
    np.testing.assert_array_equal(points[0], points[2])
    assert not np.allclose(points[0], points[1])
    np.testing.assert_allclose(points, _reference_points(key, ids), atol=1e-6)
    # Indices drawn in another batch (another shape, another order) give the same points.
    again = np.asarray(jax.jit(training_set_points, static_argnums=0)("ring8", key, ids[::-1]))
    np.testing.assert_array_equal(again, points[::-1])


def test_every_real_batch_comes_from_the_runs_five_points():
    builder = _builder(_config(5, batch=16, steps_per_call=10, n_critic=2))
    seen = _recording(builder)
    state = builder.init_state(0)
    step = jax.jit(builder.multi_step)
    for _ in range(3):
        state, _ = step(state, None)
    jax.effects_barrier()
    assert len(seen) == 3 * 10 * 2  # calls x steps x critic updates
    reals = np.concatenate([x for _, x in seen])
    expected = _reference_points(state.key, range(5))
    distance = np.linalg.norm(reals[:, None, :] - expected[None], axis=-1)  # (960, 5)
    assert distance.min(axis=1).max() < 1e-6  # every real point is one of the 5
    assert len(np.unique(reals.round(5), axis=0)) == 5  # ... and 960 draws with replacement hit all 5
    counts = np.bincount(distance.argmin(axis=1), minlength=5)
    assert counts.min() > 0.5 * len(reals) / 5  # uniform indices: ~192 each (binomial std 12)


def test_different_seeds_train_on_different_points():
    builder = _builder(_config(5, batch=16, steps_per_call=5))
    seen = _recording(builder)
    step = jax.jit(builder.multi_step)
    for seed in (0, 1):
        step(builder.init_state(seed), None)
    jax.effects_barrier()
    keys_seen = [k for k, _ in seen]
    points = [np.unique(np.concatenate([x for k, x in seen if np.array_equal(k, key)]), axis=0)
              for key in (keys_seen[0], next(k for k in keys_seen if not np.array_equal(k, keys_seen[0])))]
    assert [len(p) for p in points] == [5, 5]  # 80 draws per run hit all of its 5 points
    assert np.linalg.norm(points[0][:, None] - points[1][None], axis=-1).min() > 1e-4


def test_num_examples_0_draws_fresh_mixture_points_every_update():
    builder = _builder(_config(0, batch=16, steps_per_call=3))
    seen = _recording(builder)
    state = builder.init_state(0)
    jax.jit(builder.multi_step)(state, None)
    jax.effects_barrier()
    # Step N's real batch: sample_mixture on the key of its critic update (keys.py), as before the set.
    expected = [np.asarray(sample_mixture("ring8", fold(fold(fold(state.key, n), keys.CRITIC_UPDATE), keys.REAL), 16))
                for n in range(3)]
    assert len(seen) == 3
    # allclose: jit fuses mean + std * noise differently from the eager reference (1 ulp).
    for real in (x for _, x in seen):
        assert sum(np.allclose(real, e, rtol=0, atol=1e-6) for e in expected) == 1
    assert {int(np.argmin([np.abs(x - e).max() for e in expected])) for _, x in seen} == {0, 1, 2}


def test_vmapped_over_two_runs_each_run_is_its_own():
    """A sweep's vectorized step: each slice of the vmapped step is that run's own step (the training
    set comes from each run's key, not from a shared constant)."""
    builder = _builder(_config(5, batch=16, steps_per_call=4))
    seen = _recording(builder)
    runs = [builder.init_state(seed) for seed in (0, 1)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *runs)
    hp = builder.hyperparameters()
    vmapped, _ = jax.jit(jax.vmap(builder.multi_step, in_axes=(0, None, None)))(stacked, None, hp)
    for i, state in enumerate(runs):
        alone, _ = jax.jit(builder.multi_step)(state, None, hp)
        for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(jax.tree.map(lambda x, i=i: x[i], vmapped)),
                        strict=True):
            np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)
    jax.effects_barrier()
    for state in runs:
        reals = np.concatenate([x for k, x in seen if np.array_equal(k, state.key)])
        assert len(reals) == 2 * 4 * 16  # the vmapped and the single run's 4 updates
        expected = _reference_points(state.key, range(5))
        assert np.linalg.norm(reals[:, None] - expected, axis=-1).min(axis=-1).max() < 1e-6


def test_pmap_real_batch_is_the_global_batchs_slice():
    c = _config(5, batch=16)
    key, base_key = jax.random.PRNGKey(7), jax.random.PRNGKey(1)
    full = np.asarray(jax.jit(_builder(c).real_examples)(key, None, base_key))
    # 8 devices x 2 examples; the keys replicated as a mapped axis (pmap needs one).
    slices = jax.pmap(_builder(c, parallel.PMAP_AXIS).real_examples, axis_name=parallel.PMAP_AXIS,
                      in_axes=(0, None, 0))(parallel.pmap_replicate(key), None, parallel.pmap_replicate(base_key))
    np.testing.assert_array_equal(np.asarray(slices).reshape(full.shape), full)


def test_pmap_step_equals_one_device():
    c = _config(5, batch=16)
    single, multi = _builder(c), _builder(c, parallel.PMAP_AXIS)
    s0 = single.init_state(0)
    s1, m1 = jax.jit(single.train_step)(s0, None)
    sp, mp = jax.pmap(multi.train_step, axis_name=parallel.PMAP_AXIS, in_axes=(0, None))(
        parallel.pmap_replicate(s0), None)
    for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(sp.params), strict=True):
        np.testing.assert_allclose(np.asarray(b)[0], a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(mp["d_loss"])[0], m1["d_loss"], rtol=1e-5)


def test_num_examples_needs_mixture_or_image_data():
    c = _config(100)
    c.data.name = "mnist"
    with pytest.raises(ConfigError, match=r"data.num_examples=100 .*data.name='mnist'.*accepted: 0 "):
        build_steps(c, {}, (5,), None, False)  # neither mixture points nor images


def test_num_examples_on_images_keeps_the_splits_first_images():
    from gan_jax import data
    from gan_jax.experiment import Experiment

    c = _config(1000)
    c.data.name, c.data.source, c.model.name = "quickstart_digits", "embedded", "dcgan_tutorial"
    images, _ = data.load_arrays(c.data.name, c.data.split, c.data.source)
    exp = Experiment(c)
    np.testing.assert_array_equal(exp.images, images[:1000])
    c.data.num_examples = len(images) + 1
    with pytest.raises(ConfigError, match=rf"^data.num_examples={len(images) + 1} is more than the {len(images)} "):
        Experiment(c)
