"""Scoring images "in classifier space": our own classifiers (experiments/classifier.py:<data>), whose
parameters ship in gan_jax/evaluate/classifiers/ so that every user computes the same numbers offline.

Penultimate features give FID, KID and precision/recall against the data's test split; the softmax gives
the Inception-Score analogue, the class histogram and the fraction of confidently classified samples.
Every record names the classifier by the SHA-256 of its parameters.

A shipped classifier is a .npz of float32 arrays (read with allow_pickle=False) holding its variables
under their paths ('params/Conv_0/kernel', ...) and its model config as JSON under '__config__'."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import flax
import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import disk, parallel
from gan_jax.errors import ConfigError, UserError
from gan_jax.evaluate import metrics
from gan_jax.evaluate.inception import params_sha256
from gan_jax.models import settings
from gan_jax.models.classifier import ConvClassifier, classifier_from_config
from gan_jax.sampling import restore

CLASSIFIER_DIR = Path(__file__).parent / "classifiers"
# The shipped classifier that scores each data set (its images must have the classifier's shape).
CLASSIFIER_FOR_DATA = {"mnist": "mnist", "binarized_mnist": "mnist", "quickstart_digits": "mnist",
                       "fashion_mnist": "fashion_mnist", "cifar10": "cifar10"}
# The SHA-256 of each shipped classifier's parameters (README table): a file that differs is damaged.
SHIPPED_SHA256 = {
    "mnist": "47c033ce9b5197113294f083355cfe4e759007673be6d7c01145626064b7b799",
    "fashion_mnist": "6767c0c9a54d6706c9b8e83263994e603a376137a173045e6b75f42c3bef8b05",
    "cifar10": "0a39feaa2a3f1bf4398594037fe610290fae7d617ae1b40d18550afb85d36bbe",
}
CONFIDENCE = 0.9  # a sample is "confidently classified" when its top softmax probability reaches this
_CONFIG_KEY = "__config__"


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureNet:
    name: str
    apply: Callable  # (variables, uint8 images (N, H, W, C)) -> (features (N, d), probabilities (N, K)); jittable
    variables: dict  # {'params': ..., 'batch_stats': ...}
    input_shape: tuple[int, ...] | None  # (H, W, C) of the images it takes; None: any size
    sha256: str  # of `variables` (inception.params_sha256)
    resize: str | None = None  # Inception: the name of its 299x299 resize (ops/resize.py RESIZES); None: none
    model: dict | None = None  # a classifier file's model fields (classifier_from_config); None: not known

    @property
    def identity(self) -> dict:
        """What names the feature space in a record: the network, its parameters' SHA-256 and the resize."""
        return {"classifier": self.name, "classifier_sha256": self.sha256,
                **({"resize": self.resize} if self.resize is not None else {})}


def classifier_net(name: str, net: ConvClassifier, variables, input_shape: tuple[int, ...],
                   sha256: str | None = None, model: dict | None = None) -> FeatureNet:
    """A ConvClassifier as a feature network: penultimate features and softmax. One apply function per
    architecture (modules compare by value), so that every FeatureNet of it shares one compilation.
    `model`: the model fields it was built from, where known."""
    if net not in _CLASSIFIER_APPLY:
        def apply(variables, x_u8):
            x = x_u8.astype(jnp.float32) / 127.5 - 1.0  # steps.to_model_range for GAN-range models
            features, logits = net.apply(variables, x, train=False, with_features=True)
            return features, jax.nn.softmax(logits)

        _CLASSIFIER_APPLY[net] = apply
    return FeatureNet(name, _CLASSIFIER_APPLY[net], variables, tuple(input_shape),
                      sha256 or params_sha256(variables), model=model)


_CLASSIFIER_APPLY: dict = {}


def inception_net(weights: str, resize: str | None = None, field: str = "eval.inception_weights") -> FeatureNet:
    """Cached per weights file and resize (None: DEFAULT_RESIZE): see _inception_net. `field` names
    `weights` in errors."""
    from gan_jax.ops.resize import DEFAULT_RESIZE, RESIZES

    resize = resize or DEFAULT_RESIZE

    if resize not in RESIZES:
        raise ConfigError(f"eval.inception_resize={resize!r} is not accepted; accepted: {', '.join(RESIZES)}")
    if (weights, resize) not in _LOADED:
        _LOADED[weights, resize] = _inception_net(weights, resize, field)
    return _LOADED[weights, resize]


def _inception_net(weights: str, resize: str, field: str) -> FeatureNet:
    """The FID InceptionV3 (gan_jax/evaluate/inception.py) as a feature network: 2048-d pool3 features and
    the softmax of its 1008 logits; `weights` is a pytorch-fid weight file, or 'download' for the cached one;
    `resize` names the 299x299 resize (gan_jax/ops/resize.py)."""
    from gan_jax.evaluate import inception

    try:
        path = inception.inception_weights_path(None if weights == "download" else weights)
        variables = inception.load_inception_params(path)
    except UserError as e:
        raise UserError(f"{field}={weights!r}: {e}") from None
    net = inception.InceptionV3(resize=resize)

    def apply(variables, x_u8):
        pool3, logits = net.apply(variables, x_u8.astype(jnp.float32) / 255.0)
        return pool3, jax.nn.softmax(logits)

    return FeatureNet("inception_v3", apply, variables, None, params_sha256(variables), resize)


def classifier_path(name: str) -> Path:
    return CLASSIFIER_DIR / f"classifier_{name}.npz"


def shipped_classifiers() -> list[str]:
    return sorted(p.stem.removeprefix("classifier_") for p in CLASSIFIER_DIR.glob("classifier_*.npz"))


def save_classifier(path: str | os.PathLike, model_config: dict, input_shape: tuple[int, ...], variables) -> str:
    """Writes a classifier file (atomically); returns the SHA-256 of its variables."""
    flat = {"/".join(k): np.asarray(v, np.float32) for k, v in flax.traverse_util.flatten_dict(
        jax.device_get(flax.core.unfreeze(variables))).items()}
    config = json.dumps({"model": model_config, "input_shape": list(input_shape)}, sort_keys=True)
    with disk.replacing(path, ".npz") as tmp:
        np.savez(tmp, **flat, **{_CONFIG_KEY: np.array(config)})
    return params_sha256(flax.traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()}))


def load_classifier(name_or_path: str) -> FeatureNet:
    """A shipped classifier by data-set name ('mnist', 'fashion_mnist', 'cifar10') or a classifier file."""
    path = Path(name_or_path) if name_or_path.endswith(".npz") else classifier_path(name_or_path)
    key = (str(path.resolve()), path.stat().st_mtime_ns if path.is_file() else None)
    if key not in _LOADED:  # one FeatureNet per file, so that its compiled embedding is reused
        _LOADED[key] = _load_classifier(name_or_path, path)
    return _LOADED[key]


_LOADED: dict = {}


def _load_classifier(name_or_path: str, path: Path) -> FeatureNet:
    if not path.is_file():
        raise UserError(f"eval.classifier={name_or_path!r}: no classifier file {path}; accepted: "
                        f"{', '.join(shipped_classifiers()) or '(none shipped)'} or a .npz written by save_classifier")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        config = json.loads(str(arrays.pop(_CONFIG_KEY)))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{path} is not a classifier file ({reason})") from None
    variables = flax.traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in arrays.items()})
    shape = tuple(config["input_shape"])
    sha = params_sha256(variables)
    name = path.stem.removeprefix("classifier_")
    if path.parent == CLASSIFIER_DIR and SHIPPED_SHA256.get(name, sha) != sha:
        raise UserError(f"{path} has parameters sha256 {sha}, not the shipped {SHIPPED_SHA256[name]}: the file is "
                        "damaged; reinstall gan-jax (or retrain it: README, Evaluation)")
    return classifier_net(name, classifier_from_config(config["model"], shape), variables, shape, sha,
                          config["model"])


def embed(fnet: FeatureNet, images_u8: np.ndarray, mesh: jax.sharding.Mesh | None = None,
          batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, feature_dim), softmax probabilities (N, classes)), float32, of uint8 images
    (N, H, W, C), computed data-parallel over `mesh` (default: every device) in batches."""
    images_u8 = np.asarray(images_u8)
    if images_u8.dtype != np.uint8 or images_u8.ndim != 4 or (
            fnet.input_shape is not None and tuple(images_u8.shape[1:]) != fnet.input_shape):
        raise ConfigError(f"eval.classifier={fnet.name!r} takes uint8 images {fnet.input_shape or '(H, W, C)'}, "
                          f"got {images_u8.dtype} {tuple(images_u8.shape[1:])}")
    mesh = mesh if mesh is not None else parallel.make_mesh()
    devices = mesh.devices.size
    batch = -(-batch_size // devices) * devices  # a multiple of the device count
    sharding = parallel.batch_sharding(mesh, 4, batch_axis=0)
    fn = _embed_fn(fnet.apply, sharding, parallel.replicated(mesh))
    variables = parallel.host_replicated(fnet.variables, mesh)
    features, probs = [], []
    for i in range(0, len(images_u8), batch):
        rows = images_u8[i:i + batch]
        padded = np.concatenate([rows, np.zeros((batch - len(rows), *rows.shape[1:]), np.uint8)])
        x = jax.make_array_from_callback(padded.shape, sharding, lambda index, a=padded: a[index])
        f, p = fn(variables, x)
        features.append(np.asarray(f)[:len(rows)])
        probs.append(np.asarray(p)[:len(rows)])
    return np.concatenate(features), np.concatenate(probs)


_EMBED_FNS: dict = {}


def _embed_fn(apply: Callable, in_sharding, out_sharding):
    key = (apply, in_sharding, out_sharding)
    if key not in _EMBED_FNS:
        _EMBED_FNS[key] = parallel.one_execution_at_a_time(
            jax.jit(apply, in_shardings=(out_sharding, in_sharding), out_shardings=out_sharding))
    return _EMBED_FNS[key]


_REFERENCE_FEATURES: dict = {}


def reference_features(fnet: FeatureNet, images_u8: np.ndarray, mesh: jax.sharding.Mesh | None = None,
                       batch_size: int = 500) -> np.ndarray:
    """`embed`'s features of reference images, computed once per process for each (network, images):
    an evaluation every few thousand steps scores against the same test split every time."""
    images_u8 = np.ascontiguousarray(images_u8)
    key = (fnet.sha256, fnet.resize, images_u8.shape, str(images_u8.dtype),
           hashlib.blake2b(images_u8.data).hexdigest())
    if key not in _REFERENCE_FEATURES:
        if len(_REFERENCE_FEATURES) >= 4:
            _REFERENCE_FEATURES.pop(next(iter(_REFERENCE_FEATURES)))
        _REFERENCE_FEATURES[key] = embed(fnet, images_u8, mesh, batch_size)[0]
    return _REFERENCE_FEATURES[key]


@dataclasses.dataclass(frozen=True)
class Embedded:
    """A set of images in a feature network's space, as the scores (SCORES) read it."""
    n: int
    fid: object  # what FID reads: a FeatureStats (accumulated on the device), the features, or a (mean, cov) pair
    features: np.ndarray | None  # (n, d) float32; None where only the statistics are known (a stats file)
    probs: np.ndarray | None  # (n, classes) softmax, float32; None where not kept (a reference)


def embed_samples(fnet: FeatureNet, images: Iterable[np.ndarray], mesh: jax.sharding.Mesh | None = None,
                  batch_size: int = 500) -> Embedded:
    """uint8 image chunks (each (n, H, W, C)) embedded chunk by chunk, their features' mean and covariance
    accumulated on the device (FeatureStats): the generated side of the scores."""
    stats, features, probs = metrics.FeatureStats(), [], []
    for chunk in images:
        f, p = embed(fnet, chunk, mesh, batch_size)
        stats.update(f)
        features.append(f)
        probs.append(p)
    features, probs = np.concatenate(features), np.concatenate(probs)
    return Embedded(len(features), stats, features, probs)


def embedded_reference(features: np.ndarray) -> Embedded:
    """Reference features (n, d): FID fits their mean and covariance in float64 on the host."""
    return Embedded(len(features), features, features, None)


def _fid(samples: Embedded, reference: Embedded, seed: int) -> dict:
    return {"fid": metrics.frechet_distance(samples.fid, reference.fid)}


def _kid(samples: Embedded, reference: Embedded, seed: int) -> dict:
    kid_mean, kid_std = metrics.kernel_distance(samples.features, reference.features, seed=seed)
    return {"kid": kid_mean, "kid_std": kid_std}


def _precision_recall(samples: Embedded, reference: Embedded, seed: int) -> dict:
    precision, recall = metrics.precision_recall(reference.features, samples.features)
    return {"precision": precision, "recall": recall}


def _density_coverage(samples: Embedded, reference: Embedded, seed: int) -> dict:
    density, coverage = metrics.density_coverage(reference.features, samples.features, k=5)
    return {"density": density, "coverage": coverage}


def _inception_score(samples: Embedded, reference: Embedded, seed: int) -> dict:
    is_mean, is_std = metrics.inception_score(samples.probs)
    return {"is": is_mean, "is_std": is_std}


def _classes(samples: Embedded, reference: Embedded, seed: int) -> dict:
    probs = samples.probs
    return {"confident_fraction": float(np.mean(probs.max(axis=1) >= CONFIDENCE)),
            "class_histogram": np.bincount(probs.argmax(axis=1), minlength=probs.shape[1]).tolist()}


@dataclasses.dataclass(frozen=True)
class Score:
    fn: Callable[[Embedded, Embedded, int], dict]  # (samples, reference, KID's subset seed) -> values
    needs: str  # 'statistics': the mean and covariance suffice; 'features' of both sets; 'probabilities' of samples


# The scores by name, in the order of a record: FID, KID (mean, std over 100 subsets of 1,000),
# precision/recall (k = 3), density/coverage (k = 5), the Inception-Score analogue (10 splits), the
# fraction with top probability >= CONFIDENCE and the class histogram.
SCORES = {"fid": Score(_fid, "statistics"), "kid": Score(_kid, "features"),
          "precision_recall": Score(_precision_recall, "features"),
          "density_coverage": Score(_density_coverage, "features"), "is": Score(_inception_score, "probabilities"),
          "classes": Score(_classes, "probabilities")}


def scores(samples: Embedded, reference: Embedded, names: Iterable[str] = tuple(SCORES), seed: int = 0) -> dict:
    """The named SCORES of `samples` against `reference`, one flat dict."""
    return {k: v for name in names for k, v in SCORES[name].fn(samples, reference, seed).items()}


def score(fnet: FeatureNet, images: Iterable[np.ndarray], reference_u8: np.ndarray,
          mesh: jax.sharding.Mesh | None = None, batch_size: int = 500, seed: int = 0) -> dict:
    """Classifier-space metrics of uint8 image chunks (each (n, H, W, C)) against reference images: every
    one of SCORES, under the network's identity (name, SHA-256, resize) and the two counts."""
    reference = embedded_reference(reference_features(fnet, reference_u8, mesh, batch_size))
    samples = embed_samples(fnet, images, mesh, batch_size)
    return {**fnet.identity, "samples": samples.n, "reference_images": reference.n,
            **scores(samples, reference, seed=seed)}


def feature_dim(fnet: FeatureNet) -> int:
    """The dimension d of `fnet`'s features (FID needs more than d samples in each set)."""
    return _output_widths(fnet)[0]


def num_classes(fnet: FeatureNet) -> int:
    """The number of classes K of `fnet`'s softmax."""
    return _output_widths(fnet)[1]


def _output_widths(fnet: FeatureNet) -> tuple[int, int]:
    shape = fnet.input_shape or (299, 299, 3)
    features, probs = jax.eval_shape(fnet.apply, fnet.variables, jax.ShapeDtypeStruct((1, *shape), jnp.uint8))
    return int(features.shape[1]), int(probs.shape[1])


def check_counts(fnet: FeatureNet, num_samples: int, num_reference: int) -> None:
    """Refuses sample counts that leave FID's covariances singular (n <= d), before any sampling."""
    d = feature_dim(fnet)
    for field, n in (("eval.num_samples", num_samples), ("eval.num_examples (test images)", num_reference)):
        if n <= d:
            raise ConfigError(f"{field}={n} is not accepted with the {d}-dimensional features of "
                              f"{fnet.name!r}: FID needs more samples than dimensions; accepted: > {d}")


def classifier_for(cfg) -> str:
    """The classifier that scores a run: eval.classifier, or the one shipped for its data set."""
    name = cfg.eval.classifier or CLASSIFIER_FOR_DATA.get(cfg.data.name, "")
    if not name:
        raise ConfigError(f"eval.classifier='' and data.name={cfg.data.name!r} has no shipped classifier; accepted: "
                          f"a data set among {', '.join(sorted(CLASSIFIER_FOR_DATA))}, or eval.classifier=PATH.npz")
    return name


def fits(exp) -> bool:
    """Whether a shipped (or named) classifier exists for a generating run's data."""
    if not exp.objective.generates or exp.dataset.mixture is not None:
        return False
    name = exp.cfg.eval.classifier or CLASSIFIER_FOR_DATA.get(exp.cfg.data.name, "")
    if not name or not (name.endswith(".npz") or classifier_path(name).is_file()):
        return False
    return load_classifier(name).input_shape == tuple(exp.example_shape)


def export(workdir: str, step: int | None = None, out: str | None = None,
           replace_shipped: bool = False) -> tuple[str, str]:
    """Writes the classifier trained in `workdir` (objective='classifier') as a classifier file, by
    default the shipped one of its data set, which it replaces only if the parameters hash to the
    recorded SHIPPED_SHA256 (a reproduction) or with `replace_shipped` (a release, whose new hash
    then goes into SHIPPED_SHA256); returns (path, SHA-256)."""
    exp, step, state = restore(workdir, step)
    if "classifier" not in exp.nets:
        raise UserError(f"--workdir={workdir!r} holds objective={exp.cfg.objective!r}; accepted: a classifier run")
    model = {k: v for k, v in settings(exp.cfg.model, "classifier_cnn").items()
             if k in ("num_classes", "widths", "feature_dim", "convs_per_block")}
    variables = {"params": state.params["classifier"], "batch_stats": state.batch_stats["classifier"]}
    path = out or str(classifier_path(exp.cfg.data.name))
    recorded = SHIPPED_SHA256.get(exp.cfg.data.name)
    if out is None and recorded and not replace_shipped:
        as_saved = jax.tree.map(lambda v: np.asarray(v, np.float32), jax.device_get(flax.core.unfreeze(variables)))
        sha = params_sha256(as_saved)
        if sha != recorded:
            raise UserError(f"the run's parameters hash to {sha}, not to the shipped {exp.cfg.data.name} classifier's "
                            f"{recorded}; accepted: --out PATH, or --replace_shipped to release it (then record "
                            "the new hash in SHIPPED_SHA256)")
    return path, save_classifier(path, model, tuple(exp.example_shape), variables)


if __name__ == "__main__":
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="Writes the classifier trained in WORKDIR as a classifier file "
                                     "(default: the shipped one of its data set, in gan_jax/evaluate/classifiers/).")
    parser.add_argument("workdir")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest)")
    parser.add_argument("--out", default=None, help="output .npz (default: the shipped file)")
    parser.add_argument("--replace_shipped", action="store_true",
                        help="replace the shipped file even though the hash differs (a new release)")
    args = parser.parse_args()
    try:
        written, sha = export(args.workdir, args.step, args.out, args.replace_shipped)
    except UserError as e:
        sys.exit(f"error: {e}")
    print(f"wrote {written} (params sha256 {sha})")
