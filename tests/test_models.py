"""Output shapes of every model, initialization, and per-example dropout."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gan_jax import models
from gan_jax.errors import ConfigError
from gan_jax.models.dcgan import ExampleDropout


def _cfg(**kwargs):
    return ml_collections.ConfigDict({"latent_dim": 100, **kwargs})


def _apply(net, x, key=0):
    variables = net.init({"params": jax.random.PRNGKey(key), "dropout": jax.random.PRNGKey(1),
                          "latent": jax.random.PRNGKey(2)}, x, train=False)
    out, _ = net.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(3),
                                                      "latent": jax.random.PRNGKey(4)}, mutable=["batch_stats"])
    return variables, out


@pytest.mark.parametrize("name,shape,latent,extra", [
    ("dcgan_tutorial", (28, 28, 1), 100, {}),
    ("dcgan", (32, 32, 3), 100, {"generator_width": 8, "discriminator_width": 8}),
    ("dcgan", (64, 64, 3), 100, {"generator_width": 4, "discriminator_width": 4}),
    ("mlp_gan", (28, 28, 1), 10, {"generator_width": 16, "discriminator_width": 8, "maxout_pieces": 3}),
    ("mlp_gan", (2,), 2, {"generator_width": 16, "generator_batch_norm": True, "discriminator_width": 8}),
])
def test_gan_shapes(name, shape, latent, extra):
    nets = models.build(_cfg(name=name, latent_dim=latent, **extra), shape)
    _, fake = _apply(nets["generator"], jnp.ones((3, latent)))
    assert fake.shape == (3, *shape)
    if len(shape) == 3:
        assert float(jnp.abs(fake).max()) <= 1.0  # tanh output
    _, logits = _apply(nets["discriminator"], fake)
    assert logits.shape == (3,)


@pytest.mark.parametrize("architecture,shape", [("mlp", (28, 28, 1)), ("conv", (28, 28, 1)), ("conv", (32, 32, 3))])
def test_vae_shapes(architecture, shape):
    nets = models.build(_cfg(name="vae", architecture=architecture, latent_dim=5, hidden=16), shape)
    vae = nets["vae"]
    _, (decoded, mean, logvar) = _apply(vae, jnp.ones((2, *shape)) * 0.5)
    assert decoded.shape == (2, *shape) and mean.shape == (2, 5) and logvar.shape == (2, 5)


def test_radford_init_is_normal_002():
    nets = models.build(_cfg(name="dcgan", generator_width=16, discriminator_width=16), (32, 32, 3))
    variables, _ = _apply(nets["generator"], jnp.ones((2, 100)))
    kernels = [np.asarray(x).ravel() for path, x in jax.tree_util.tree_leaves_with_path(variables["params"])
               if "kernel" in jax.tree_util.keystr(path)]
    allw = np.concatenate(kernels)
    assert abs(allw.std() - 0.02) < 0.002 and abs(allw.mean()) < 0.002


def test_bad_model_config_is_refused():
    with pytest.raises(ConfigError, match="model.name='nope' is unknown; accepted: biggan, classifier_cnn, dcgan, "
                                          "dcgan_tutorial"):
        models.build(_cfg(name="nope"), (28, 28, 1))
    with pytest.raises(ConfigError, match="dcgan_tutorial.*28x28"):
        models.build(_cfg(name="dcgan_tutorial"), (32, 32, 3))
    with pytest.raises(ConfigError, match="power-of-two"):
        models.build(_cfg(name="dcgan"), (28, 28, 1))


def test_dropout_masks_are_keyed_per_example():
    """The mask of example i does not depend on which other examples share its batch or device."""
    drop = ExampleDropout(0.5)
    x = jnp.ones((8, 6))
    rngs = {"dropout": jax.random.PRNGKey(0)}
    full = drop.apply({}, x, deterministic=False, rngs=rngs)
    assert 0.2 < float((full == 0).mean()) < 0.8 and set(np.unique(np.asarray(full))) <= {0.0, 2.0}
    # Under pmap with 2 devices of 4 examples each, device d's examples are 4d..4d+3.
    halves = jax.pmap(lambda xs: ExampleDropout(0.5, "i").apply({}, xs, deterministic=False, rngs=rngs),
                      axis_name="i", devices=jax.devices()[:2])(x.reshape(2, 4, 6))
    np.testing.assert_array_equal(np.asarray(halves).reshape(8, 6), full)


def test_mlp_gan_uniform_init_and_input_dropout():
    """Goodfellow et al. 2014's networks: uniform(-r, r) weights (pylearn2's irange), biases 0, and D's
    input dropout: each input unit kept with probability 1 - rate and scaled by 1 / (1 - rate)."""
    cfg = _cfg(name="mlp_gan", latent_dim=100, generator_width=300, discriminator_width=60, maxout_pieces=5,
               generator_init_range=0.05, discriminator_init_range=0.005, input_dropout_rate=0.2)
    nets = models.build(cfg, (28, 28, 1))
    for name, r, x in (("generator", 0.05, jnp.ones((2, 100))), ("discriminator", 0.005, jnp.ones((2, 28, 28, 1)))):
        params = nets[name].init({"params": jax.random.PRNGKey(0)}, x, train=False)["params"]
        kernels = np.concatenate([np.ravel(k) for k in jax.tree.leaves(params) if k.ndim == 2])
        biases = [b for b in jax.tree.leaves(params) if b.ndim == 1]
        assert np.abs(kernels).max() <= r and len(kernels) > 50_000
        np.testing.assert_allclose(kernels.std(), r / np.sqrt(3), rtol=0.02)  # uniform(-r, r)'s
        assert all(not np.any(b) for b in biases)
    x = jax.random.uniform(jax.random.PRNGKey(5), (64, 28, 28, 1)) + 0.5  # no zero pixel of its own
    d = nets["discriminator"]
    variables = d.init({"params": jax.random.PRNGKey(0)}, x, train=False)
    _, state = d.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(1)},
                       capture_intermediates=True, mutable=["intermediates"])
    dropped = np.asarray(state["intermediates"]["ExampleDropout_0"]["__call__"][0])
    flat = np.asarray(x).reshape(64, -1)
    kept = dropped != 0
    assert abs(kept.mean() - 0.8) < 0.01  # 50,176 draws: a standard error of 0.002
    np.testing.assert_allclose(dropped[kept], flat[kept] / 0.8, rtol=1e-6)
    # Control: without the field, D has no input dropout and its default init is flax's.
    plain = models.build(_cfg(name="mlp_gan", latent_dim=100, discriminator_width=60, maxout_pieces=5), (28, 28, 1))
    _, state = plain["discriminator"].apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(1)},
                                            capture_intermediates=True, mutable=["intermediates"])
    assert "ExampleDropout_0" not in state["intermediates"]


def test_mlp_gan_unit_pixels_is_the_sigmoid_network_on_unit_pixels():
    """model.unit_pixels: G's output is 2 sigmoid(a) - 1 (a sigmoid layer mapped to [-1, 1]) and D reads
    (x + 1) / 2, so that the networks compute exactly on [0, 1] pixels while the data stay in [-1, 1]."""
    common = dict(name="mlp_gan", latent_dim=8, generator_width=16, discriminator_width=8, maxout_pieces=3)
    unit = models.build(_cfg(unit_pixels=True, **common), (4, 4, 1))
    plain = models.build(_cfg(**common), (4, 4, 1))
    z = jax.random.normal(jax.random.PRNGKey(0), (5, 8))
    g_vars = unit["generator"].init(jax.random.PRNGKey(1), z, train=False)
    x = unit["generator"].apply(g_vars, z, train=False)
    # The pre-activation a from the plain network's tanh(a), then the definition.
    a = np.arctanh(np.asarray(plain["generator"].apply(g_vars, z, train=False), np.float64))
    np.testing.assert_allclose(x, 2.0 / (1.0 + np.exp(-a)) - 1.0, atol=1e-5)
    assert np.abs(np.asarray(x) - np.tanh(a)).max() > 1e-2  # control: not the tanh network
    d_vars = unit["discriminator"].init(jax.random.PRNGKey(2), x, train=False)
    np.testing.assert_allclose(unit["discriminator"].apply(d_vars, x, train=False),
                               plain["discriminator"].apply(d_vars, (x + 1.0) / 2.0, train=False), rtol=1e-5, atol=1e-6)
