"""The image classifier whose penultimate features and softmax score generated images (FID, KID,
precision/recall and the Inception-Score analogue "in classifier space", gan_jax/evaluate/classify.py).

A VGG-style network: per entry of `widths`, `convs_per_block` 3x3 convolutions with BatchNorm and ReLU,
then a 2x2 max pool; a Dense layer of `feature_dim` units (BatchNorm, ReLU: the features), then the logits."""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from gan_jax.errors import ConfigError
from gan_jax.models import POSITIVE, Field, register, settings
from gan_jax.models.layers import Conv


class ConvClassifier(nn.Module):
    num_classes: int = 10
    widths: Sequence[int] = (32, 64)
    feature_dim: int = 128
    convs_per_block: int = 2
    conv_impl: str = "auto"
    bn_axis_name: str | None = None  # pmap axis: BatchNorm statistics over the global batch

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False, with_features: bool = False):
        """x (N, H, W, C) in [-1, 1] -> logits (N, num_classes), or (features (N, feature_dim), logits)."""
        bn = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9, axis_name=self.bn_axis_name)
        h = x
        for width in self.widths:
            for _ in range(self.convs_per_block):
                h = nn.relu(bn()(Conv(width, (3, 3), padding="SAME", use_bias=False, impl=self.conv_impl)(h)))
            h = nn.max_pool(h, (2, 2), (2, 2))
        features = nn.relu(bn()(nn.Dense(self.feature_dim, use_bias=False)(h.reshape(h.shape[0], -1))))
        logits = nn.Dense(self.num_classes)(features)
        return (features, logits) if with_features else logits


def classifier_from_config(cfg: ml_collections.ConfigDict | dict, example_shape: tuple[int, ...]) -> ConvClassifier:
    """The classifier of `config.model` (also the shipped classifiers' saved model config)."""
    s = settings(cfg, "classifier_cnn")
    if s["num_classes"] < 1:
        raise ConfigError(f"model.num_classes={s['num_classes']!r} is not accepted by model.name='classifier_cnn'; "
                          "accepted: >= 1 (the classes it tells apart)")
    widths = tuple(s["widths"])
    size = example_shape[0]
    if len(example_shape) != 3 or size % 2 ** len(widths):
        raise ConfigError(f"model.widths={list(widths)!r}: {len(widths)} 2x2 poolings need images whose size is a "
                          f"multiple of {2 ** len(widths)}, got data of shape {example_shape}")
    return ConvClassifier(s["num_classes"], widths, s["feature_dim"], s["convs_per_block"], s["conv_impl"],
                          cfg.get("axis_name", None))


# model.num_classes (a shared field, gan_jax/models/__init__.py): the classes it tells apart.
@register("classifier_cnn", {
    "widths": Field((32, 64), POSITIVE),  # channels of each block (each block ends in a 2x2 max pooling)
    "convs_per_block": Field(2, POSITIVE),  # 3x3 convolutions
    "feature_dim": Field(128, POSITIVE),  # the features layer (what classifier-space metrics compare)
}, num_classes=True)
def build_classifier(cfg: ml_collections.ConfigDict, example_shape: tuple[int, ...]) -> dict[str, nn.Module]:
    return {"classifier": classifier_from_config(cfg, example_shape)}
