"""Metrics of class-conditional generators (model.num_classes = K > 0) in a classifier's terms
(the evaluators `conditional` and `cas`, gan_jax/evaluate/evaluators.py):

- conditional accuracy: the fraction of the samples drawn for class c that the classifier assigns to c,
  over all samples and per class;
- intra-class FID (Miyato & Koyama 2018): per class c, the FID in the classifier's feature space between
  the samples drawn for c and the eval split's images of class c; `intra_fid` is their mean over classes;
- the Classification Accuracy Score (Ravuri & Vinyals 2019): a classifier trained on the samples, each
  labelled with the class it was drawn for, through the classifier objective (gan_jax/objectives/
  classifier.py, as the shipped classifiers were), and its accuracy on the real eval split.

Samples cycle through the classes as every sampler of a conditional run does by default
(sampling.class_cycle): sample j is of class j % K, so n samples hold n // K or n // K + 1 of each."""

from __future__ import annotations

import jax
import ml_collections
import numpy as np

from gan_jax import data, parallel, signals
from gan_jax.config import base_config, set_fields
from gan_jax.data.pipeline import InputPipeline
from gan_jax.errors import ConfigError
from gan_jax.evaluate import classify
from gan_jax.evaluate.metrics import frechet_distance
from gan_jax.experiment import Experiment
from gan_jax.models import settings
from gan_jax.sampling import class_cycle, labels_at

# The CAS classifier's optimizer besides eval.cas_learning_rate: the shipped classifiers' (experiments/
# classifier.py), without their augmentation, so that the samples alone are what it learns from.
CAS_OPTIMIZER = {"optimizer.b1": 0.9, "optimizer.schedule": "cosine"}
CAS_DATA_NAME = "cas_generated_samples"  # the name the samples are held under while the classifier trains


def sample_labels(num_classes: int, num_samples: int) -> np.ndarray:
    """The class int32 (n,) of each of the first n samples a conditional run draws by default."""
    return labels_at(class_cycle(num_classes, None, "labels={!r}"), 0, num_samples)


def check_class_counts(feature_dim: int, num_classes: int, num_samples: int, split_labels: np.ndarray,
                       num_examples: int | None, split: str) -> None:
    """Refuses counts that leave a class's FID covariance singular (n <= d): eval.num_samples samples
    cycled over `num_classes` classes, and the first `num_examples` (None: all) of the eval split
    `split`, whose labels are `split_labels` (all of the split's)."""
    d, k = feature_dim, num_classes
    if num_samples // k <= d:
        raise ConfigError(f"eval.num_samples={num_samples} is not accepted by the 'conditional' evaluator: it gives "
                          f"{num_samples // k} samples of a class to fit a {d}-dimensional covariance; "
                          f"accepted: >= {k * (d + 1)}")
    labels = np.asarray(split_labels)
    counts = np.bincount(labels[:num_examples], minlength=k)[:k]
    short = int(np.argmin(counts))
    if counts[short] > d:
        return
    enough = first_rows_holding(labels, k, d + 1)
    if enough is None:
        raise ConfigError(f"data.eval_split={split!r} is not accepted by the 'conditional' evaluator: it holds "
                          f"{np.bincount(labels, minlength=k)[short]} images of class {short} to fit a "
                          f"{d}-dimensional covariance; accepted: a split with more than {d} images of each class")
    raise ConfigError(f"eval.num_examples={num_examples!r} is not accepted by the 'conditional' evaluator: the first "
                      f"images of split {split!r} hold {counts[short]} of class {short} to fit a {d}-dimensional "
                      f"covariance; accepted: >= {enough}, or None (all)")


def first_rows_holding(labels: np.ndarray, num_classes: int, count: int) -> int | None:
    """The smallest m whose first m `labels` hold at least `count` of each class; None if the whole do not."""
    positions = [np.flatnonzero(labels == c) for c in range(num_classes)]
    if any(len(p) < count for p in positions):
        return None
    return int(max(p[count - 1] for p in positions)) + 1


def class_scores(sample_features: np.ndarray, sample_probs: np.ndarray, sample_labels: np.ndarray,
                 reference_features: np.ndarray, reference_labels: np.ndarray) -> dict:
    """Conditional accuracy and intra-class FID of samples (features (n, d), softmax (n, K), the class each
    was drawn for (n,)) against reference images of the classes (features (m, d), labels (m,))."""
    k = sample_probs.shape[1]
    labels, reference_labels = np.asarray(sample_labels), np.asarray(reference_labels)
    correct = sample_probs.argmax(axis=1) == labels
    per_class = [float(correct[labels == c].mean()) for c in range(k)]
    fids = [frechet_distance(sample_features[labels == c], reference_features[reference_labels == c])
            for c in range(k)]
    return {"accuracy": float(correct.mean()), "accuracy_per_class": per_class,
            "worst_class_accuracy": min(per_class), "intra_fid": float(np.mean(fids)), "intra_fid_per_class": fids,
            "samples_per_class": np.bincount(labels, minlength=k).tolist(),
            "reference_images_per_class": np.bincount(reference_labels, minlength=k).tolist()}


def cas_config(model: dict, seed: int, steps: int, batch_size: int, learning_rate: float) -> ml_collections.ConfigDict:
    """The classifier run that CAS trains: objective 'classifier' on the held samples, the network of
    `model` (classifier_cnn's fields: a shipped classifier's), `steps` updates of `batch_size`, Adam at
    `learning_rate` with CAS_OPTIMIZER's decay, no augmentation."""
    c = base_config()
    c.objective, c.seed = "classifier", seed
    c.data.name, c.data.source, c.data.batch_size = CAS_DATA_NAME, "memory", batch_size
    c.model.name = "classifier_cnn"
    set_fields(c, {f"model.{k}": tuple(v) if isinstance(v, list) else v for k, v in model.items()})
    c.optimizer.learning_rate = learning_rate
    set_fields(c, CAS_OPTIMIZER)
    c.train.steps, c.train.steps_per_call = steps, 1
    return c


def train_classifier(cfg: ml_collections.ConfigDict, images: np.ndarray, labels: np.ndarray):
    """Trains the classifier run `cfg` (cas_config) on uint8 images (n, H, W, C) and int labels (n,) held in
    memory, as launch.py would on files of them (tests/test_conditional_metrics.py compares the two): the
    same batches (pipeline.InputPipeline) and the same update, without a workdir. Returns (the
    Experiment, its final state)."""
    with data.held(cfg.data.name, {cfg.data.split: (images, labels)}):
        exp = Experiment(cfg)
    step_fn, batch_shardings = _update(exp)
    state = exp.init_state()
    seed = cfg.seed if cfg.data.seed is None else cfg.data.seed
    with InputPipeline((exp.images, exp.labels), cfg.data.batch_size, seed, prefetch=cfg.data.prefetch) as pipeline:
        for step in range(cfg.train.steps):
            signals.check_interrupted()
            batch = tuple(parallel.global_batch_array(a, s, batch_axis=2)
                          for a, s in zip(pipeline.get(step), batch_shardings, strict=True))
            state = step_fn(state, batch)
    return exp, state


def _update(exp: Experiment):
    """(state, (images, labels)) -> state: the objective's update over the mesh, one a call, the state
    donated; and the shardings of the (1, 1, B, ...) batches, split over their batch axis."""
    shardings, replicated = exp.state_shardings(), parallel.replicated(exp.mesh)
    batch = (parallel.batch_sharding(exp.mesh, 3 + len(exp.example_shape), batch_axis=2),
             parallel.batch_sharding(exp.mesh, 3, batch_axis=2))
    hp = parallel.host_replicated(exp.builder.hyperparameters(), exp.mesh)
    update = jax.jit(lambda state, batches, hp: exp.builder.multi_step(state, batches, hp, 1)[0],
                     in_shardings=(shardings, batch, replicated), out_shardings=shardings, donate_argnums=0)
    return parallel.one_execution_at_a_time(lambda state, batches: update(state, batches, hp)), batch


def classification_accuracy_score(images: np.ndarray, labels: np.ndarray, test_images: np.ndarray,
                                  test_labels: np.ndarray, cfg: ml_collections.ConfigDict,
                                  batch_size: int = 500) -> dict:
    """CAS: the classifier run `cfg` (cas_config) trained on generated uint8 images (n, H, W, C) labelled
    with their classes (n,), then its accuracy on real test images (m, H, W, C) with labels (m,), over
    all and per class; with the budget it trained on."""
    exp, state = train_classifier(cfg, images, labels)
    variables = jax.device_get({"params": state.params["classifier"], "batch_stats": state.batch_stats["classifier"]})
    fnet = classify.classifier_net("cas", exp.nets["classifier"], variables, tuple(exp.example_shape))
    predicted = classify.embed(fnet, test_images, exp.mesh, batch_size)[1].argmax(axis=1)
    test_labels = np.asarray(test_labels)
    k, net = cfg.model.num_classes, settings(cfg.model, "classifier_cnn")
    correct = predicted == test_labels
    return {"accuracy": float(correct.mean()),
            "accuracy_per_class": [float(correct[test_labels == c].mean()) if np.any(test_labels == c) else None
                                   for c in range(k)],
            "train_examples": len(images), "test_images": len(test_labels), "steps": cfg.train.steps,
            "batch_size": cfg.data.batch_size, "learning_rate": cfg.optimizer.learning_rate,
            "network": f"classifier_cnn widths={','.join(map(str, net['widths']))} "
                       f"convs_per_block={net['convs_per_block']} feature_dim={net['feature_dim']}"}
