"""Class-conditional models (model.num_classes > 0): each D conditioning of the registry does what its
definition says inside the models (models/conditioning.py's modules are tested alone in
test_conditioning.py), G reads the label, and the refusals are one line."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gan_jax import models
from gan_jax.errors import ConfigError
from gan_jax.models.conditioning import CLASS_LOGITS, DISCRIMINATOR_CONDITIONINGS
from gan_jax.models.dcgan import FEATURES

SHAPES = {"mlp_gan": (8, 8, 1), "dcgan_tutorial": (28, 28, 1), "dcgan": (16, 16, 3)}
K = 4


def _cfg(name, **fields):
    return ml_collections.ConfigDict({"name": name, "latent_dim": 6, "generator_width": 8, "discriminator_width": 8,
                                      "num_classes": K, "dropout_rate": 0.0, **fields})


def _init(net, x, labels):
    return net.init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}, x, labels=labels,
                    train=False)


@pytest.mark.parametrize("name", list(SHAPES))
def test_the_registry_is_the_models_choice_list(name):
    assert models.MODEL_FIELDS[name]["discriminator_conditioning"].choices == tuple(DISCRIMINATOR_CONDITIONINGS)
    assert name in models.CLASS_MODELS


FIRST_LAYER = {"mlp_gan": "Dense_0", "dcgan_tutorial": "Conv_0", "dcgan": "Conv_0"}


@pytest.mark.parametrize("name", list(SHAPES))
def test_each_discriminator_conditioning_reads_the_label_as_defined(name):
    """On D's last hidden features phi (the FEATURES it sows; D without dropout): 'projection' gives
    Dense(phi) + <E[y], phi>, 'auxiliary' Dense(phi) and class logits phi W + b, and ignores y; 'concat'
    feeds the first layer K one-hot inputs more. float64 numpy references; controls: other labels."""
    shape = SHAPES[name]
    x = jnp.asarray(np.random.default_rng(0).normal(size=(6, *shape)), jnp.float32)
    labels = np.array([0, 1, 2, 3, 0, 1], np.int32)
    for conditioning in DISCRIMINATOR_CONDITIONINGS:
        D = models.build(_cfg(name, discriminator_conditioning=conditioning), shape)["discriminator"]
        variables = _init(D, x, labels)
        params = jax.tree.map(lambda w: np.asarray(w, np.float64), variables["params"])
        out, sown = D.apply(variables, x, labels=labels, train=False, mutable=["intermediates"])
        other = D.apply(variables, x, labels=(labels + 1) % K, train=False)
        phi = np.asarray(sown["intermediates"][FEATURES][0], np.float64).reshape(6, -1)
        moved = np.abs(np.asarray(out - other)).max()
        if conditioning == "projection":
            head = params["ProjectionHead_0"]
            expected = (phi @ head["Dense_0"]["kernel"])[:, 0] + head["Dense_0"]["bias"][0] + np.sum(
                head["class_embedding"]["embedding"][labels] * phi, axis=-1)
            np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
            assert moved > 1e-3
        elif conditioning == "auxiliary":  # AC-GAN: D predicts the class, it does not read it
            classes = params["AuxiliaryClassifier_0"]["classes"]
            class_logits = sown["intermediates"]["AuxiliaryClassifier_0"][CLASS_LOGITS][0]
            np.testing.assert_allclose(class_logits, phi @ classes["kernel"] + classes["bias"], rtol=1e-4, atol=1e-4)
            assert class_logits.shape == (6, K) and moved == 0
        else:
            assert conditioning == "concat"
            fan_in = params[FIRST_LAYER[name]]["kernel"].shape[-2]
            assert fan_in == (int(np.prod(shape)) if name == "mlp_gan" else shape[-1]) + K
            assert moved > 1e-4


@pytest.mark.parametrize("name", list(SHAPES))
def test_the_generator_reads_the_label(name):
    G = models.build(_cfg(name), SHAPES[name])["generator"]
    z = jnp.asarray(np.random.default_rng(1).normal(size=(4, 6)), jnp.float32)
    labels = jnp.arange(4, dtype=jnp.int32)
    variables = G.init(jax.random.PRNGKey(0), z, labels=labels, train=False)
    # Class BatchNorm starts as plain BatchNorm (gains 1, biases 0): move every parameter off its start.
    leaves, treedef = jax.tree.flatten(variables["params"])
    moved = [w + 0.1 * jax.random.normal(jax.random.PRNGKey(i), w.shape) for i, w in enumerate(leaves)]
    variables = {**variables, "params": jax.tree.unflatten(treedef, moved)}
    a = G.apply(variables, z, labels=labels, train=False)
    b = G.apply(variables, z, labels=(labels + 1) % K, train=False)
    assert a.shape == (4, *SHAPES[name]) and np.abs(np.asarray(a - b)).max() > 1e-4


def test_unconditional_networks_ignore_labels_none_and_keep_their_parameters():
    """num_classes = 0 builds the networks of before: same parameter tree as a config without the field."""
    for name, shape in SHAPES.items():
        plain = models.build(ml_collections.ConfigDict({**_cfg(name).to_dict(), "num_classes": 0}), shape)
        without = ml_collections.ConfigDict({k: v for k, v in _cfg(name).to_dict().items() if k != "num_classes"})
        old = models.build(without, shape)
        x = jnp.zeros((2, *shape))
        a = plain["discriminator"].init(jax.random.PRNGKey(0), x, train=False)
        b = old["discriminator"].init(jax.random.PRNGKey(0), x, labels=None, train=False)
        assert jax.tree.structure(a) == jax.tree.structure(b)
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_array_equal(u, v)


def test_refusals_name_the_field_the_value_and_what_is_accepted():
    with pytest.raises(ConfigError, match=r"^model.num_classes=4 is not accepted by model.name='vae', which takes "
                                          r"no labels; accepted: 0, or a model that reads it: .*dcgan_tutorial"):
        models.build(ml_collections.ConfigDict({"name": "vae", "num_classes": 4}), (28, 28, 1))
    with pytest.raises(ConfigError, match=r"^model.pack=2 with model.num_classes=4: .*accepted: model.pack=1 for a "
                                          r"class-conditional model$"):
        models.build(_cfg("mlp_gan", pack=2), (8, 8, 1))
    with pytest.raises(ConfigError, match=r"^model.discriminator_conditioning='film' is not accepted; accepted: "
                                          r"concat, projection, auxiliary$"):
        models.build(_cfg("mlp_gan", discriminator_conditioning="film"), (8, 8, 1))
