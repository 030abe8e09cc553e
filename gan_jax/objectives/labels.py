"""The labels of a class-conditional GAN's update, as the objectives (objectives/gan.py, and an objective
written outside the package) receive them."""

import typing

import jax
from flax import traverse_util

from gan_jax.models.conditioning import CLASS_LOGITS


class BatchLabels(typing.NamedTuple):
    """The labels of one update of a class-conditional GAN, this device's rows, int32 (local_batch,)
    each; NO_LABELS (both None) for an unconditional one."""

    real: jax.Array | None  # the real batch's, from the data
    fake: jax.Array | None  # the generated batch's (train.generated_labels)


NO_LABELS = BatchLabels(None, None)


def labelled(labels: BatchLabels, **more) -> dict:
    """The keyword arguments that reach the objectives of a conditional model ({} for an unconditional
    one, so that an objective written without them serves unconditional models)."""
    return {} if labels.real is None else {"labels": labels, **more}


def class_logits_of(intermediates: dict) -> jax.Array:
    """The class logits (N, num_classes) that D's class head sowed (CLASS_LOGITS), wherever in D it sits."""
    found = [v for path, v in traverse_util.flatten_dict(intermediates).items() if path[-1] == CLASS_LOGITS]
    return found[0][0]
