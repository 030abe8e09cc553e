"""The labels of a class-conditional GAN's update, as the objectives (objectives/gan.py, and an objective
written outside the package) receive them."""

import typing

import jax
import jax.numpy as jnp
from flax import traverse_util

from gan_jax import keys
from gan_jax.models.conditioning import CLASS_LOGITS
from gan_jax.objectives.base import Hyperparameters, global_labels

# train.generated_labels -> the method giving a conditional update's generated labels: drawn uniformly over
# the classes (BigGAN-PyTorch, StudioGAN), or the real batch's (R3GAN, whose relativistic pairs share a class)
GENERATED_LABEL_RULES = {"uniform": "_uniform_labels", "real": "_real_batch_labels"}


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


class LabelledUpdates:
    """The labels of a GAN update, for a Steps subclass with num_classes (0: unconditional), cfg,
    global_batch and axis_name: those of the networks' initialization, of the real and the generated
    batch, and the keyword arguments that carry them (and hp) to the objectives."""

    def init_labels(self, n: int) -> jax.Array | None:
        """Labels of n examples for the networks' initialization (None: an unconditional model)."""
        return jnp.zeros((n,), jnp.int32) if self.num_classes else None

    def split_batch(self, batch) -> tuple:
        """An update's batch -> (images uint8 (n_critic, local_batch, ...) or None, labels int32
        (n_critic, local_batch) or None): a conditional model's batch is (images, labels)."""
        return batch if self.num_classes else (batch, None)

    def batch_labels(self, key: jax.Array, real_labels: jax.Array | None, i: int, local_batch: int) -> BatchLabels:
        """Update i's labels: the real batch's, real_labels[i] (local_batch,), and the generated batch's
        (train.generated_labels: GENERATED_LABEL_RULES); NO_LABELS for an unconditional model."""
        if real_labels is None:
            return NO_LABELS
        rule = getattr(self, GENERATED_LABEL_RULES[self.cfg.train.generated_labels])
        return BatchLabels(real_labels[i], rule(key, real_labels[i], local_batch))

    def _uniform_labels(self, key: jax.Array, real: jax.Array, local_batch: int) -> jax.Array:
        """Drawn from fold_in(key, GENERATED_LABELS) over the global batch (generated_labels)."""
        return self.generated_labels(jax.random.fold_in(key, keys.GENERATED_LABELS), local_batch)

    def _real_batch_labels(self, key: jax.Array, real: jax.Array, local_batch: int) -> jax.Array:
        """Generated example j takes real example j's label."""
        return real

    def generated_labels(self, key: jax.Array, local_batch: int) -> jax.Array:
        """This device's rows of the global batch's generated labels, uniform over the classes."""
        return global_labels(key, self.global_batch, self.num_classes, local_batch, self.axis_name)

    def generator_kwargs(self, labels: BatchLabels, hp: Hyperparameters) -> dict:
        """generator_objective's keyword arguments: labels and hp for a conditional model, hp where top-k
        reads its fraction there, else none (so that an objective written without them serves)."""
        return {"hp": hp} if labels.real is None and self.cfg.train.top_k else labelled(labels, hp=hp)
