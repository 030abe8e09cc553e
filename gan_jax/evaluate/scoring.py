"""Scores one set of images against another in a feature network's space: `python -m gan_jax.evaluate
SOURCE_A SOURCE_B` (__main__.py) and `gan_jax.evaluate.score(a, b)`, with the scores of the evaluators
(classify.SCORES) on the features of a shipped classifier, a classifier file or the FID InceptionV3.

A source is, in the order tried (SOURCE_KINDS):
  - a run folder (it holds config.json): N samples of its newest intact checkpoint, the ones its own
    evaluation of that step scores (evaluators.eval_images: the key of (seed, step), uint8 as the PNGs);
  - a stats file (.npz written by --save_stats): the mean and covariance of a set's features, FID only;
  - a samples file (.npz holding 'images', uint8 (N, H, W, C), as `launch.py --mode=sample` writes it);
  - a folder of PNG/JPEG images (gan_jax/data/readers.py: sorted paths, subfolders allowed);
  - DATA:SPLIT, a registered data set and split (mnist:test, cifar10:train, mnist:train[:10000]), read by
    data.load_arrays with source 'auto' (the files under $GAN_JAX_DATA where it is set, else TFDS);
  - from Python, a uint8 array (N, H, W, C).
SOURCE_A is scored as the samples and SOURCE_B as the reference, as the classifier_space evaluator scores
a run's samples against its test split (so the numbers are its numbers): A's statistics accumulated on
the device, the Inception Score and the class histogram from A's probabilities."""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import jax
import numpy as np

from gan_jax import data, disk
from gan_jax.data import files
from gan_jax.errors import ConfigError, UserError
from gan_jax.evaluate import classify, metrics
from gan_jax.ops.resize import RESIZES

RUN_SAMPLES = 10_000  # samples drawn from a run folder without --num (the image experiments' eval.num_samples)
STATS_KEY = "__stats__"  # a stats file's JSON header: the network, the image shape, n and the source


@dataclasses.dataclass(frozen=True)
class Source:
    description: dict  # what the source is: {'source': as given, 'kind': ..., 'n': ..., ...}
    shape: tuple[int, ...]  # (H, W, C) of its images
    chunks: Callable[[], Iterator[np.ndarray]] | None  # its uint8 images, chunk by chunk; None: a stats file
    features: str | None = None  # the features its data calls for (a data set's classifier, a stats file's)
    stats: dict | None = None  # a stats file: 'mean' (d,), 'cov' (d, d) and its header

    @property
    def n(self) -> int:
        return self.description["n"]


def _images_source(spec, kind: str, images: np.ndarray, num: int | None, features: str | None = None,
                   **described) -> Source:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise UserError(f"{_name(spec)} holds {images.dtype} images of shape {images.shape}; accepted: uint8 "
                        "(N, H, W, C) with C = 1 or 3")
    images = images[:num]
    if not len(images):
        raise UserError(f"{_name(spec)} holds no images")
    description = {"source": _name(spec), "kind": kind, **described, "n": len(images)}
    return Source(description, tuple(images.shape[1:]), lambda: iter([images]), features)


def _name(spec) -> str:
    return spec if isinstance(spec, str) else f"an array of shape {np.shape(spec)}"


def _is_run(spec: str) -> bool:
    return Path(spec, "config.json").is_file()


def _open_run(spec: str, num: int | None) -> Source:
    from gan_jax.evaluate.evaluators import eval_images
    from gan_jax.sampling import restore

    exp, step, state = restore(spec, None, call="source")
    if not exp.objective.generates or exp.dataset.mixture is not None:
        raise UserError(f"source {spec!r} is a run of objective={exp.cfg.objective!r} on data.name="
                        f"{exp.cfg.data.name!r}, which draws no images; accepted: a run that generates images")
    n = RUN_SAMPLES if num is None else num
    try:
        features = classify.classifier_for(exp.cfg)
    except ConfigError:
        features = None
    description = {"source": spec, "kind": "run", "workdir": os.path.abspath(spec), "step": int(step),
                   "seed": exp.seed, "data": exp.cfg.data.name,
                   "samples_key": "its evaluation's: fold_in(fold_in(PRNGKey(seed), keys.EVAL_SAMPLES), step)", "n": n}
    return Source(description, tuple(exp.example_shape), lambda: eval_images(exp, state, step, n), features)


def _npz_names(spec: str) -> list[str]:
    try:
        with zipfile.ZipFile(spec) as z:
            return [name.removesuffix(".npy") for name in z.namelist()]
    except (OSError, zipfile.BadZipFile):
        return []


def _is_stats(spec: str) -> bool:
    return spec.endswith(".npz") and Path(spec).is_file() and STATS_KEY in _npz_names(spec)


def _load_npz(spec: str, keys: Sequence[str]) -> dict:
    try:
        with np.load(spec, allow_pickle=False) as f:
            return {k: f[k] for k in keys}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{spec} cannot be read ({reason})") from None


def _open_stats(spec: str, num: int | None) -> Source:
    stats = _load_npz(spec, ("mean", "cov", STATS_KEY))
    header = json.loads(str(stats.pop(STATS_KEY)))
    description = {"source": spec, "kind": "stats file", "statistics_of": header["source"], "n": header["n"]}
    return Source(description, tuple(header["shape"]), None, header["network"]["features"], {**stats, **header})


def _is_samples(spec: str) -> bool:
    return spec.endswith(".npz") and Path(spec).is_file()


def _open_samples(spec: str, num: int | None) -> Source:
    names = _npz_names(spec)
    if "images" not in names:
        held = "2-D points, not images" if "points" in names else f"arrays {names}" if names else "no readable arrays"
        raise UserError(f"{spec} holds {held}; accepted: a samples .npz with 'images' (launch.py --mode=sample) "
                        "or a stats file (--save_stats)")
    return _images_source(spec, "samples file", _load_npz(spec, ("images",))["images"], num)


def _open_folder(spec: str, num: int | None) -> Source:
    images, _ = data.load_arrays(spec, "train", "files")  # one line naming the folder or the file that fails
    return _images_source(spec, "image folder", np.asarray(images), num)


def _is_data_set(spec: str) -> bool:
    name, colon, _ = spec.partition(":")
    return bool(colon) and name in data.DATASETS


def _open_data_set(spec: str, num: int | None) -> Source:
    name, _, split = spec.partition(":")
    data_dir = os.environ.get(files.ENV_VAR) or None
    read_from, folder = data.resolve_source(name, "auto", data_dir)
    images, _ = data.load_arrays(name, split, "auto", data_dir)
    where = {"data_dir": folder} if read_from in ("files", "tfds") else {}
    return _images_source(spec, "data set", np.asarray(images), num, classify.CLASSIFIER_FOR_DATA.get(name),
                          name=name, split=split, read_from=read_from, **where)


# The kinds of source, in the order tried: (what it is, whether a string names one, open(spec, num)).
SOURCE_KINDS = [("a run folder (config.json)", _is_run, _open_run),
                ("a stats file (--save_stats)", _is_stats, _open_stats),
                ("a samples .npz ('images')", _is_samples, _open_samples),
                ("a folder of PNG/JPEG images", lambda spec: Path(spec).is_dir(), _open_folder),
                (f"DATA:SPLIT with DATA one of {', '.join(sorted(data.DATASETS))}", _is_data_set, _open_data_set)]


def open_source(spec, num: int | None = None, label: str = "source") -> Source:
    """The source `spec` names (SOURCE_KINDS; or a uint8 array), with at most `num` images (a run: exactly
    `num`, RUN_SAMPLES without it)."""
    if isinstance(spec, np.ndarray):
        return _images_source(spec, "array", spec, num)
    spec = os.fspath(spec)
    for _, matches, open_kind in SOURCE_KINDS:
        if matches(spec):
            return open_kind(spec, num)
    raise UserError(f"{label} {spec!r} is no source; accepted: {'; '.join(kind for kind, _, _ in SOURCE_KINDS)}")


def feature_net(spec: str, resize: str | None, inception_weights: str = "download") -> classify.FeatureNet:
    """The network that `--features=spec` names: a shipped classifier, a classifier file or 'inception'
    (with `resize`, a key of ops/resize.py's RESIZES, default DEFAULT_RESIZE)."""
    if resize is not None and resize not in RESIZES:
        raise UserError(f"--resize={resize!r} is not accepted; accepted: {', '.join(RESIZES)}")
    if spec == "inception":
        return classify.inception_net(inception_weights, resize, field="--inception_weights")
    if resize is not None:
        raise UserError(f"--resize={resize!r} applies to --features=inception only, not --features={spec!r}")
    if spec in classify.shipped_classifiers() or spec.endswith(".npz"):
        return classify.load_classifier(spec)
    raise UserError(f"--features={spec!r} is not accepted; accepted: {', '.join(classify.shipped_classifiers())}, "
                    "inception or PATH.npz (a classifier file)")


def network_record(fnet: classify.FeatureNet, spec: str) -> dict:
    """What names a feature space in the output and in a stats file."""
    return {"features": spec, "name": fnet.name, "sha256": fnet.sha256, "dim": classify.feature_dim(fnet),
            "resize": fnet.resize}


def _default_features(sources: dict[str, Source]) -> str:
    """A stats file's features (the only ones it can be scored in), else those the sources' data call for."""
    said = {label: s.features for label, s in sources.items() if s.stats} or {
        label: s.features for label, s in sources.items() if s.features}
    if len(set(said.values())) == 1:
        return next(iter(said.values()))
    which = ", ".join(f"{label} {s.description['source']!r} says {s.features or 'nothing'}"
                      for label, s in sources.items())
    raise UserError(f"--features is needed ({which}); accepted: {', '.join(classify.shipped_classifiers())}, "
                    "inception or PATH.npz (a classifier file)")


def _metric_names(metrics_arg, sources: dict[str, Source]) -> list[str]:
    """The scores asked for (default: all, or fid alone beside a stats file), each checked against what
    the sources hold."""
    if metrics_arg is None:
        return ["fid"] if any(s.stats for s in sources.values()) else list(classify.SCORES)
    text = metrics_arg if isinstance(metrics_arg, str) else ",".join(metrics_arg)
    names = [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        if n not in classify.SCORES:
            raise UserError(f"--metrics={text!r}: {n!r} is unknown; accepted: {', '.join(classify.SCORES)}")
        needs = classify.SCORES[n].needs
        for label, s in sources.items():
            if s.stats and needs != "statistics" and (needs == "features" or label == "SOURCE_A"):
                raise UserError(f"--metrics={text!r}: {n!r} needs the {needs} of {label}, and {label} "
                                f"{s.description['source']!r} is a stats file (mean and covariance only); "
                                "accepted with a stats file: fid")
    return names


def _check(fnet: classify.FeatureNet, spec: str, sources: dict[str, Source], names: list[str]) -> None:
    """One line for sources of two image shapes, images the network does not take, statistics of another
    network, and too few images for FID's covariance."""
    shapes = {label: s.shape for label, s in sources.items()}
    if len(set(shapes.values())) > 1:
        raise UserError(" and ".join(f"{label} {s.description['source']!r} has images {s.shape}"
                                     for label, s in sources.items()) + "; accepted: one image size and channel count")
    for label, s in sources.items():
        if fnet.input_shape is not None and s.shape != fnet.input_shape:
            raise UserError(f"--features={spec!r} takes images {fnet.input_shape}, {label} "
                            f"{s.description['source']!r} has {s.shape}; accepted: the features of its images")
        network = s.stats and s.stats["network"]
        if network and (network["sha256"], network["resize"]) != (fnet.sha256, fnet.resize):
            raise UserError(f"{label} {s.description['source']!r} holds statistics of {network['name']} features "
                            f"(sha256 {network['sha256'][:16]}, resize {network['resize']}), --features={spec!r} is "
                            f"{fnet.name} (sha256 {fnet.sha256[:16]}, resize {fnet.resize}); accepted: "
                            f"--features={network['features']!r}" + (f" --resize={network['resize']}"
                                                                         if network["resize"] else ""))
    if "fid" in names:
        d = classify.feature_dim(fnet)
        for label, s in sources.items():
            if s.n <= d:
                raise UserError(f"{label} {s.description['source']!r} has n={s.n} images and --features={spec!r} "
                                f"d={d} dimensions: FID needs n > d; accepted: n > {d} (--num or a larger source), "
                                "or --metrics without fid")


def _embedded(source: Source, fnet, as_samples: bool, mesh, batch_size: int) -> classify.Embedded:
    """`source` as the scores read it: the samples (statistics on the device, probabilities kept), the
    reference (features) or a stats file's mean and covariance."""
    if source.stats:
        return classify.Embedded(source.n, (source.stats["mean"], source.stats["cov"]), None, None)
    if as_samples:
        return classify.embed_samples(fnet, source.chunks(), mesh, batch_size)
    features = np.concatenate([classify.embed(fnet, chunk, mesh, batch_size)[0] for chunk in source.chunks()])
    return classify.embedded_reference(features)


def write_stats(path: str, reference: classify.Embedded, network: dict, source: Source) -> str:
    """Writes the mean and covariance of `reference`'s features (metrics.mean_cov, float64) and the header
    (network, image shape, n, the source's description) to the .npz `path`, atomically."""
    if reference.features is None:
        raise UserError(f"--save_stats={path!r}: {source.description['source']!r} is a stats file already")
    mean, cov = metrics.mean_cov(reference.features)
    header = {"network": network, "shape": list(source.shape), "n": reference.n, "source": source.description}
    with disk.replacing(path, ".npz") as tmp:
        np.savez(tmp, mean=mean, cov=cov, **{STATS_KEY: np.array(json.dumps(header))})
    return path


def score(a, b=None, *, features: str | None = None, metrics: str | Sequence[str] | None = None,
          num: int | None = None, save_stats: str | None = None, resize: str | None = None,
          inception_weights: str = "download", seed: int = 0, batch_size: int = 500,
          mesh: jax.sharding.Mesh | None = None) -> dict:
    """The scores of source `a` (the samples) against source `b` (the reference): {score: value, ...,
    'provenance': {'SOURCE_A': its description, 'SOURCE_B': ..., 'features': the network's name, SHA-256,
    dimension and resize, 'kid_seed': seed}}. `metrics`: names of classify.SCORES (default: all; fid
    alone with a stats file); `num`: at most that many images of each source (a run draws exactly num,
    RUN_SAMPLES without it); `save_stats`: a path, where b's statistics are written (a's when b is None);
    `resize` (Inception): a key of ops/resize.py's RESIZES, default a stats file's, else DEFAULT_RESIZE; `seed`:
    KID's subsets. Raises UserError (one line) for bad input."""
    if num is not None and (isinstance(num, bool) or num <= 0):
        raise UserError(f"--num={num!r} is not accepted; accepted: a positive count")
    if b is None and save_stats is None:
        raise UserError("one source scores nothing; accepted: SOURCE_A SOURCE_B, or one source with --save_stats")
    sources = {label: open_source(spec, num, label) for label, spec in (("SOURCE_A", a), ("SOURCE_B", b))
               if spec is not None}
    spec = features or _default_features(sources)
    if resize is None and spec == "inception":  # a stats file's resize, else the default
        resize = next((s.stats["network"]["resize"] for s in sources.values() if s.stats), None)
    fnet = feature_net(spec, resize, inception_weights)
    names = _metric_names(metrics, sources) if b is not None else []
    _check(fnet, spec, sources, names or ["fid"])  # statistics alone are saved for FID
    network = network_record(fnet, spec)
    provenance = {label: s.description for label, s in sources.items()}
    provenance.update(features=network, **({"kid_seed": seed} if "kid" in names else {}))
    saved, scored = sources["SOURCE_B" if b is not None else "SOURCE_A"], {}
    reference = _embedded(saved, fnet, False, mesh, batch_size)
    if b is not None:
        samples = _embedded(sources["SOURCE_A"], fnet, True, mesh, batch_size)
        try:
            scored = classify.scores(samples, reference, names, seed)
        except ValueError as e:  # too few images for a score (metrics.py says which and how many)
            raise UserError(f"--metrics={','.join(names)}: {e}") from None
    if save_stats is not None:
        provenance["saved_stats"] = write_stats(save_stats, reference, network, saved)
    return {**scored, "provenance": provenance}


def summary_lines(result: dict) -> list[str]:
    """A readable line per score of `score`'s result (a long class histogram summarized), then the network."""
    def readable(v) -> str:
        if isinstance(v, float):
            return f"{v:.6g}"
        if isinstance(v, list) and len(v) > 20:
            return f"{len(v)} classes, {sum(1 for c in v if c)} of them predicted (the counts: in the JSON)"
        return str(v)

    lines = [f"{k:<20} {readable(v)}" for k, v in result.items() if k != "provenance"]
    network = result["provenance"]["features"]
    resize = f", resize {network['resize']}" if network["resize"] else ""
    return [*lines, f"{'features':<20} {network['features']} ({network['name']}, sha256 {network['sha256']}{resize})"]
