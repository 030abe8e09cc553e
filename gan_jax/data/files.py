"""Named data sets and generic data paths loaded from local files (no network, no cache files).

Named sets follow the layout of the shared data folder (see its README.md):

    <data_dir>/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    <data_dir>/fashion_mnist/...  (same as mnist)
    <data_dir>/cifar10/data_batch_{1..5}.bin[.gz], test_batch.bin[.gz], batches.meta.txt
    <data_dir>/celeba64_10k.tar  or  <data_dir>/celeba64/*.jpg

Loaded arrays are cached in-process (keyed by resolved path, mtime and size) and returned
read-only, so repeated loads are free and no caller can corrupt another caller's copy.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gan_jax.data import readers
from gan_jax.errors import DataError

ENV_VAR = "GAN_JAX_DATA"
# gan_jax/data/files.py -> repo root is three levels up.
REPO_ROOT = Path(__file__).resolve().parents[2]

NAMED_DATASETS = ("mnist", "fashion_mnist", "cifar10", "celeba64")
_SPLITS = {"mnist": ("train", "test"), "fashion_mnist": ("train", "test"), "cifar10": ("train", "test"),
           "celeba64": ("train",)}
# Exact sizes of the official files: a count mismatch means a wrong or partial copy.
_COUNTS = {"mnist": {"train": 60_000, "test": 10_000}, "fashion_mnist": {"train": 60_000, "test": 10_000},
           "cifar10": {"train": 50_000, "test": 10_000}, "celeba64": {"train": 10_000}}
_IDX_PREFIX = {"train": "train", "test": "t10k"}
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
_CIFAR_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))

Arrays = tuple[np.ndarray, np.ndarray | None]
_CACHE: dict[tuple, Arrays] = {}


def default_data_dir() -> Path:
    """Data folder: env GAN_JAX_DATA if set and non-empty, else `../shared/data` from the repo root."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else (REPO_ROOT.parent / "shared" / "data").resolve()


def _data_dir(data_dir: str | os.PathLike | None) -> Path:
    return Path(data_dir) if data_dir is not None else default_data_dir()


def _find(folder: Path, stem: str) -> Path:
    """`folder/stem` or `folder/stem.gz` (uncompressed first: it loads faster)."""
    for p in (folder / stem, folder / f"{stem}.gz"):
        if p.is_file():
            return p
    raise DataError(f"{folder / stem}.gz: file not found (nor {stem} without .gz)")


def _file_key(paths: list[Path]) -> tuple:
    out = []
    for p in paths:
        st = p.stat()
        out.append((str(p.resolve()), st.st_mtime_ns, st.st_size))
    return tuple(out)


def _cached(key: tuple, load) -> Arrays:
    if key not in _CACHE:
        images, labels = load()
        for a in (images, labels):
            if a is not None:
                a.setflags(write=False)
        _CACHE[key] = (images, labels)
    return _CACHE[key]


def clear_cache() -> None:
    """Drop all cached arrays (e.g. to free memory)."""
    _CACHE.clear()


def _check_split(name: str, split: str, accepted: tuple[str, ...]) -> None:
    if split not in accepted:
        raise DataError(
            f"data set {name!r}: unknown split {split!r}, expected one of {', '.join(map(repr, accepted))}"
        )


def _check_count(source: Path | str, n: int, name: str, split: str) -> None:
    expected = _COUNTS[name][split]
    if n != expected:
        raise DataError(f"{source}: {n} images, expected {expected} for {name} {split}")


def _load_idx_pair(folder: Path, split: str, name: str) -> Arrays:
    """MNIST-layout folder -> images uint8 (N, H, W, 1), labels int64 (N,)."""
    _check_split(name, split, ("train", "test"))
    prefix = _IDX_PREFIX[split]
    img_path = _find(folder, f"{prefix}-images-idx3-ubyte")
    lab_path = _find(folder, f"{prefix}-labels-idx1-ubyte")

    def load() -> Arrays:
        images = readers.read_idx(img_path)
        labels = readers.read_idx(lab_path)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataError(
                f"{img_path}: idx {images.dtype} dims {images.shape}, expected uint8 (N, rows, cols)"
            )
        if labels.ndim != 1 or labels.dtype != np.uint8:
            raise DataError(f"{lab_path}: idx {labels.dtype} dims {labels.shape}, expected uint8 (N,)")
        if len(images) != len(labels):
            raise DataError(f"{lab_path}: {len(labels)} labels, expected {len(images)} like {img_path.name}")
        if name in _COUNTS:
            _check_count(img_path, len(images), name, split)
            if labels.size and labels.max() >= 10:
                raise DataError(f"{lab_path}: label {labels.max()}, expected 0..9")
        return images[..., None], labels.astype(np.int64)

    return _cached(("idx", name, split, _file_key([img_path, lab_path])), load)


def _load_cifar10(folder: Path, split: str) -> Arrays:
    _check_split("cifar10", split, _SPLITS["cifar10"])
    stems = _CIFAR_TRAIN if split == "train" else ("test_batch.bin",)
    paths = [_find(folder, s) for s in stems]

    def load() -> Arrays:
        images, labels = readers.read_cifar10_binary(paths)
        _check_count(folder, len(images), "cifar10", split)
        return images, labels

    return _cached(("cifar10", split, _file_key(paths)), load)


def _load_images(path: Path, image_size: int | None, center_crop: bool) -> Arrays:
    """Image folder (not cached: a folder's content has no single mtime) or tar (cached)."""
    if path.is_dir():
        images, labels, _ = readers.read_image_folder(path, image_size, center_crop)
        images.setflags(write=False)
        return images, labels

    def load() -> Arrays:
        images, labels, _ = readers.read_image_tar(path, image_size, center_crop)
        return images, labels

    return _cached(("tar", image_size, center_crop, _file_key([path])), load)


def _load_celeba64(data_dir: Path, split: str, image_size: int | None, center_crop: bool) -> Arrays:
    _check_split("celeba64", split, _SPLITS["celeba64"])
    tar, folder = data_dir / "celeba64_10k.tar", data_dir / "celeba64"
    source = tar if tar.is_file() else folder if folder.is_dir() else None
    if source is None:
        raise DataError(f"{tar}: file not found (nor a folder {folder})")
    images, _ = _load_images(source, image_size, center_crop)
    _check_count(source, len(images), "celeba64", split)
    side = image_size or 64
    if images.shape[1:] != (side, side, 3):
        raise DataError(f"{source}: images of shape {images.shape[1:]}, expected ({side}, {side}, 3)")
    return images, None


def is_data_path(name: str) -> bool:
    """Whether `name` is meant as a data path rather than a data set name: it has a separator or a
    data file suffix, or exists. A path that is meant but missing fails later, naming the path."""
    return (os.sep in name or "/" in name or name.endswith((".npz", ".gz", ".tar", ".tgz", "-ubyte", ".bin"))
            or Path(name).exists())


def _load_path(path: Path, split: str, image_size: int | None, center_crop: bool) -> Arrays:
    """Generic data path: .npz, .tar[.gz], image folder, MNIST-layout folder, idx or CIFAR .bin file."""
    if not path.exists():
        raise DataError(f"{path}: data path not found")
    if path.is_dir() and any(
        (path / f"{pre}-images-idx3-ubyte{z}").is_file() for pre in ("train", "t10k") for z in ("", ".gz")
    ):
        return _load_idx_pair(path, split, str(path))
    # A single file or image folder is one split; call it 'train' so a typo cannot alias it.
    _check_split(str(path), split, ("train",))
    name = path.name
    if path.is_dir() or name.endswith(_TAR_SUFFIXES):
        return _load_images(path, image_size, center_crop)
    if name.endswith(".npz"):
        return _cached(("npz", _file_key([path])), lambda: readers.read_npz(path))
    if name.endswith((".bin", ".bin.gz")):
        return _cached(("cifar", _file_key([path])), lambda: readers.read_cifar10_binary([path]))

    def load_idx() -> Arrays:
        images = readers.read_idx(path)
        if images.dtype != np.uint8 or images.ndim not in (3, 4):
            raise DataError(f"{path}: idx {images.dtype} dims {images.shape}, expected uint8 (N, H, W[, C])")
        images = images[..., None] if images.ndim == 3 else images
        labels = None
        # Pair `*images-idx3*` with a sibling `*labels-idx1*` file when there is one.
        if "images-idx3" in name:
            stem = name.replace("images-idx3", "labels-idx1").removesuffix(".gz")
            candidates = (path.with_name(stem), path.with_name(stem + ".gz"))
            lab_path = next((p for p in candidates if p.is_file()), None)
            if lab_path is not None:
                lab = readers.read_idx(lab_path)
                if lab.shape != (len(images),) or not np.issubdtype(lab.dtype, np.integer):
                    raise DataError(
                        f"{lab_path}: idx dims {lab.shape}, expected ({len(images)},) integer labels"
                    )
                labels = lab.astype(np.int64)
        return images, labels

    return _cached(("idx-file", _file_key([path])), load_idx)


def load_file_dataset(
    name: str,
    split: str,
    data_dir: str | os.PathLike | None = None,
    *,
    image_size: int | None = None,
    center_crop: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Load a named data set split, or a data file/folder, from local files.

    Args:
        name: one of `NAMED_DATASETS`, or a path to a .npz (key `x`, optional `y`), a .tar/.tar.gz
            of images, a folder of images (labels from class subfolders), a folder in MNIST idx
            layout, an idx images file or a CIFAR-10 .bin[.gz] batch.
        split: 'train' or 'test' (celeba64 and single files/image folders: 'train' only).
        data_dir: folder holding the named data sets; None -> `default_data_dir()`.
        image_size, center_crop: resize (and first crop to square) images from folders and tars.

    Returns:
        images: uint8 (N, H, W, C), read-only. labels: int64 (N,), read-only, or None.
    """
    if name in NAMED_DATASETS:
        root = _data_dir(data_dir)
        if name in ("mnist", "fashion_mnist"):
            _check_split(name, split, _SPLITS[name])
            return _load_idx_pair(root / name, split, name)
        if name == "cifar10":
            return _load_cifar10(root / "cifar10", split)
        return _load_celeba64(root, split, image_size, center_crop)
    if is_data_path(name):
        return _load_path(Path(name), split, image_size, center_crop)
    raise DataError(
        f"unknown data set {name!r}, expected one of {', '.join(NAMED_DATASETS)} "
        "or a path to a .npz, .tar[.gz], image folder or idx file"
    )
