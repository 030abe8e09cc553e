"""gan_jax/models/conditioning.py against the mechanisms' definitions, computed in float64 numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.models.conditioning import (
    CLASS_LOGITS,
    AuxiliaryClassifier,
    ClassBatchNorm,
    ConditionedBatchNorm,
    ProjectionHead,
    concat_labels,
)

RNG = np.random.default_rng(0)


def batch_norm64(x: np.ndarray, eps: float) -> np.ndarray:
    """Training-mode BatchNorm without affine, per channel over every other axis (biased variance)."""
    x = x.astype(np.float64)
    axes = tuple(range(x.ndim - 1))
    return (x - x.mean(axes)) / np.sqrt(x.var(axes) + eps)


def randomized(variables, seed: int = 1):
    """Every parameter replaced by N(0, 1) draws, so that the test does not pass on initial values."""
    leaves, treedef = jax.tree.flatten(variables["params"])
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    params = jax.tree.unflatten(treedef, [jax.random.normal(k, w.shape) for k, w in zip(keys, leaves, strict=True)])
    return {**variables, "params": params}


@pytest.mark.parametrize("shape", [(12, 5, 5, 3), (12, 7)])
def test_class_batch_norm_is_gain_and_bias_of_the_label(shape):
    x, labels = RNG.normal(size=shape).astype(np.float32), RNG.integers(0, 4, shape[0]).astype(np.int32)
    module = ClassBatchNorm(num_classes=4)
    variables = module.init(jax.random.PRNGKey(0), x, labels, train=False)
    # Gains start at 1 and biases at 0: a fresh layer is plain BatchNorm.
    np.testing.assert_array_equal(variables["params"]["gain"]["embedding"], np.ones((4, shape[-1])))
    np.testing.assert_array_equal(variables["params"]["bias"]["embedding"], np.zeros((4, shape[-1])))
    variables = randomized(variables)
    out, _ = module.apply(variables, x, labels, train=True, mutable=["batch_stats"])
    gain = np.asarray(variables["params"]["gain"]["embedding"], np.float64)[labels]
    bias = np.asarray(variables["params"]["bias"]["embedding"], np.float64)[labels]
    lift = lambda v: v.reshape(shape[0], *(1,) * (len(shape) - 2), shape[-1])
    expected = batch_norm64(x, 1e-5) * lift(gain) + lift(bias)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # Control: another example's label gives another output.
    other, _ = module.apply(variables, x, (labels + 1) % 4, train=True, mutable=["batch_stats"])
    assert np.abs(np.asarray(other) - expected).max() > 0.1


def test_conditioned_batch_norm_is_biggan_ccbn():
    x, c = RNG.normal(size=(10, 4, 4, 6)).astype(np.float32), RNG.normal(size=(10, 9)).astype(np.float32)
    module = ConditionedBatchNorm()
    variables = randomized(module.init(jax.random.PRNGKey(0), x, c, train=False))
    out, _ = module.apply(variables, x, c, train=True, mutable=["batch_stats"])
    w_gain = np.asarray(variables["params"]["gain"]["kernel"], np.float64)
    w_bias = np.asarray(variables["params"]["bias"]["kernel"], np.float64)
    assert set(variables["params"]["gain"]) == {"kernel"}  # bias-free maps, as BigGAN's
    gain, bias = 1.0 + c.astype(np.float64) @ w_gain, c.astype(np.float64) @ w_bias
    expected = batch_norm64(x, 1e-5) * gain[:, None, None] + bias[:, None, None]
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_class_batch_norm_inference_uses_running_statistics():
    x, labels = RNG.normal(size=(16, 3)).astype(np.float32) * 3 + 2, np.arange(16, dtype=np.int32) % 2
    module = ClassBatchNorm(num_classes=2, momentum=0.0)  # momentum 0: the running stats are the last batch's
    variables = module.init(jax.random.PRNGKey(0), x, labels, train=False)
    _, new = module.apply(variables, x, labels, train=True, mutable=["batch_stats"])
    out = module.apply({**variables, **new}, x, labels, train=False)
    np.testing.assert_allclose(out, batch_norm64(x, 1e-5), rtol=1e-4, atol=1e-4)


def test_concat_labels_appends_one_hot():
    x = RNG.normal(size=(3, 2, 2, 1)).astype(np.float32)
    labels = np.array([2, 0, 1], np.int32)
    out = np.asarray(concat_labels(jnp.asarray(x), labels, 3))
    assert out.shape == (3, 2, 2, 4)
    np.testing.assert_array_equal(out[..., :1], x)
    np.testing.assert_array_equal(out[..., 1:], np.broadcast_to(np.eye(3)[labels][:, None, None], (3, 2, 2, 3)))
    vectors = np.asarray(concat_labels(jnp.ones((3, 5)), labels, 3))
    np.testing.assert_array_equal(vectors, np.concatenate([np.ones((3, 5)), np.eye(3)[labels]], -1))


def test_projection_head_is_linear_plus_inner_product():
    phi, labels = RNG.normal(size=(8, 6)).astype(np.float32), RNG.integers(0, 5, 8).astype(np.int32)
    head = ProjectionHead(num_classes=5)
    variables = randomized(head.init(jax.random.PRNGKey(0), phi, labels))
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
    expected = (phi @ p["Dense_0"]["kernel"])[:, 0] + p["Dense_0"]["bias"][0]
    expected = expected + np.sum(p["class_embedding"]["embedding"][labels] * phi, axis=1)
    np.testing.assert_allclose(head.apply(variables, phi, labels), expected, rtol=1e-5, atol=1e-5)
    # Unconditional: only the linear part, and no embedding parameters.
    plain = ProjectionHead()
    plain_vars = plain.init(jax.random.PRNGKey(0), phi)
    assert set(plain_vars["params"]) == {"Dense_0"}


def test_auxiliary_classifier_sows_its_logits():
    phi = RNG.normal(size=(4, 7)).astype(np.float32)
    head = AuxiliaryClassifier(num_classes=3)
    variables = head.init(jax.random.PRNGKey(0), phi)
    out, state = head.apply(variables, phi, mutable=["intermediates"])
    assert out.shape == (4, 3)
    np.testing.assert_array_equal(state["intermediates"][CLASS_LOGITS][0], out)
    k, b = variables["params"]["classes"]["kernel"], variables["params"]["classes"]["bias"]
    np.testing.assert_allclose(out, phi.astype(np.float64) @ k + b, rtol=1e-5, atol=1e-5)
