"""PacGAN packing (model.pack = m): D judges m samples at once, concatenated along their last axis."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gan_jax import models
from gan_jax.config import base_config
from gan_jax.errors import ConfigError
from gan_jax.models import Packed
from gan_jax.objectives import build_steps


class _Flatten(nn.Module):
    """A 'discriminator' that returns its input flattened per example, to read what D was given."""

    @nn.compact
    def __call__(self, x, train=True):
        self.param("unused", nn.initializers.zeros, ())
        return x.reshape(x.shape[0], -1)


@pytest.mark.parametrize("shape", [(2,), (4, 4, 3)])
def test_groups_are_consecutive_samples_concatenated_along_the_last_axis(shape):
    m, n = 3, 6
    x = np.random.RandomState(0).rand(n, *shape).astype(np.float32)
    net = Packed(_Flatten(), m)
    variables = net.init(jax.random.PRNGKey(0), x[:2])  # init works for a batch that m does not divide
    seen = np.asarray(net.apply(variables, x))
    expected = np.stack([np.concatenate([x[g * m + j] for j in range(m)], axis=-1).ravel() for g in range(n // m)])
    np.testing.assert_array_equal(seen, expected)


def _cfg(name, **fields):
    return ml_collections.ConfigDict({"name": name, "latent_dim": 4, "generator_width": 8, "discriminator_width": 8,
                                      "maxout_pieces": 2, **fields})


@pytest.mark.parametrize("name,shape", [("mlp_gan", (2,)), ("dcgan_tutorial", (28, 28, 1)), ("dcgan", (16, 16, 3))])
@pytest.mark.parametrize("m", [2, 3])
def test_packed_discriminators_take_groups_and_return_a_logit_each(name, shape, m):
    D = models.build(_cfg(name, pack=m), shape)["discriminator"]
    x = jnp.ones((6, *shape))
    variables = D.init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}, x[:2], train=False)
    assert D.apply(variables, x, train=False).shape == (6 // m,)


def test_pack_1_is_the_unpacked_model():
    plain = models.build(_cfg("mlp_gan"), (2,))["discriminator"]
    assert not isinstance(plain, Packed)
    x = jnp.asarray(np.random.RandomState(1).randn(5, 2), jnp.float32)
    variables = plain.init(jax.random.PRNGKey(0), x, train=False)
    wrapped = Packed(plain, 1)
    np.testing.assert_array_equal(wrapped.apply({"params": {"inner": variables["params"]}}, x, train=False),
                                  plain.apply(variables, x, train=False))


def _ring_builder(pack, batch=64, penalties=""):
    c = base_config()
    c.objective, c.data.name, c.data.source, c.data.batch_size = "gan", "ring8", "synthetic", batch
    c.model.update(_cfg("mlp_gan", pack=pack, latent_dim=2))
    c.loss.penalties = penalties
    c.train.steps_per_call = 50
    return build_steps(c, models.build(c.model, (2,)), (2,), "ring8", False)


def test_a_packed_gan_step_trains_both_networks_on_finite_values():
    """50 updates of PacGAN2 on the ring: finite throughout, and both networks moved (the groups' one
    logit each is what D is trained on: test_packed_discriminators_take_groups_and_return_a_logit_each)."""
    builder = _ring_builder(pack=2)
    initial = builder.init_state(0)
    state, metrics = jax.jit(builder.multi_step)(initial, None)
    assert np.asarray(metrics["finite"]).all() and np.asarray(metrics["d_loss"]).shape == (50,)
    for net in ("generator", "discriminator"):
        moved = [float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                 for a, b in zip(jax.tree.leaves(state.params[net]), jax.tree.leaves(initial.params[net]), strict=True)]
        assert min(moved) > 0, net


@pytest.mark.parametrize("pack,batch,penalties,expected", [
    (3, 64, "", "model.pack=3 does not divide the per-device batch"),
    (2, 64, "r1:1", "accepted: model.pack=1 with penalties"),
])
def test_packing_that_cannot_work_is_refused_in_one_line(pack, batch, penalties, expected):
    with pytest.raises(ConfigError, match=expected) as e:
        _ring_builder(pack, batch, penalties)
    assert "\n" not in str(e.value)
