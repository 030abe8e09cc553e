"""Strict low-level readers for local image data files, returning numpy arrays.

Every reader validates its input completely (headers, sizes, decodability) and raises
`gan_jax.errors.DataError` with a one-line message naming the file and the problem, so a corrupt
or truncated download fails loudly instead of training on garbage.
"""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from gan_jax.errors import DataError

PathLike = str | os.PathLike

# idx type code -> big-endian numpy dtype (LeCun's idx format description).
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_CIFAR_RECORD = 1 + 32 * 32 * 3
_CIFAR_CLASSES = 10
_IMAGE_FORMATS = ("PNG", "JPEG")
# Above this mean compressed size per image a thread pool is used: Pillow's C decoder releases the
# GIL, so big images can decode in parallel. Small ones are dominated by Python-side header parsing
# under the GIL, where threads only add contention (measured on 2 cores: 10,000 64x64 JPEGs decode
# in ~2.2 s serially vs ~3.0 s with 4 threads).
_THREADED_DECODE_MIN_BYTES = 32 * 1024
_GRAY_MODES = ("L", "1", "LA")


def read_bytes(path: PathLike) -> bytes:
    """Return the content of `path`, transparently gunzipped if it starts with the gzip magic bytes.

    Multi-member gzip streams are concatenated. Raises DataError for a missing file and for a
    truncated or corrupt gzip stream (CRC and length trailers are verified by zlib).
    """
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read file ({e.strerror or e})") from None
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    parts = []
    rest = raw
    try:
        while rest:
            d = zlib.decompressobj(wbits=31)
            parts.append(d.decompress(rest))
            if not d.eof:
                raise DataError(f"{path}: truncated gzip stream (ends before the end-of-stream marker)")
            rest = d.unused_data
            # gzip(1) tolerates zero padding after the last member; anything else is garbage.
            if rest and not rest.startswith(_GZIP_MAGIC):
                if rest.strip(b"\0"):
                    raise DataError(f"{path}: {len(rest)} bytes of trailing garbage after the gzip stream")
                break
    except zlib.error as e:
        raise DataError(f"{path}: corrupt gzip stream ({e})") from None
    return b"".join(parts) if len(parts) > 1 else parts[0]


def read_idx(path: PathLike) -> np.ndarray:
    """Read an idx file (LeCun's MNIST format), plain or gzipped (detected by magic bytes).

    Header: big-endian magic 0x0000TTNN (TT type code, NN number of dims), then NN uint32 dims.
    MNIST images (magic 2051) give (N, rows, cols) uint8; labels (magic 2049) give (N,) uint8.
    Other type codes (int8/int16/int32/float32/float64) are returned in native byte order.

    Returns:
        A read-only array with the header's shape and type code's dtype.
    """
    data = read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: {len(data)} bytes, too short for an idx header (4-byte magic number)")
    magic = int.from_bytes(data[:4], "big")
    type_code, ndim = data[2], data[3]
    if data[:2] != b"\0\0" or type_code not in _IDX_DTYPES or ndim == 0:
        raise DataError(
            f"{path}: idx magic number {magic} (0x{magic:08x}), expected 2051 (images) or 2049 (labels), "
            f"generally 0x0000TTNN with type code TT in {{08,09,0b,0c,0d,0e}} and NN >= 1 dims"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated idx header, {len(data)} bytes, expected {header} for {ndim} dims")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header
    if actual != expected:
        problem = "truncated" if actual < expected else "trailing bytes"
        raise DataError(
            f"{path}: idx {problem}: header dims {shape} need {expected} data bytes, file has {actual}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    if dtype.itemsize > 1:
        arr = arr.astype(dtype.newbyteorder("="))
        arr.setflags(write=False)
    return arr


def read_cifar10_binary(paths: Sequence[PathLike]) -> tuple[np.ndarray, np.ndarray]:
    """Read CIFAR-10 binary-version batch files (`data_batch_*.bin[.gz]`, `test_batch.bin[.gz]`).

    Each record is 1 label byte followed by the 1024 R, 1024 G and 1024 B bytes of a 32x32 image
    (row-major). Files are concatenated in the given order.

    Returns:
        images: uint8 (N, 32, 32, 3), C-contiguous. labels: int64 (N,), values in [0, 10).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise DataError("read_cifar10_binary: no files given, expected data_batch_*.bin[.gz] paths")
    images, labels = [], []
    for path in paths:
        data = read_bytes(path)
        if not data or len(data) % _CIFAR_RECORD:
            raise DataError(
                f"{path}: {len(data)} bytes is not a positive multiple of the CIFAR-10 record size "
                f"{_CIFAR_RECORD} (1 label byte + 3072 pixel bytes)"
            )
        records = np.frombuffer(data, np.uint8).reshape(-1, _CIFAR_RECORD)
        lab = records[:, 0]
        bad = np.flatnonzero(lab >= _CIFAR_CLASSES)
        if bad.size:
            raise DataError(
                f"{path}: record {bad[0]} has label {lab[bad[0]]}, expected 0..{_CIFAR_CLASSES - 1}"
            )
        labels.append(lab.astype(np.int64))
        images.append(records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def _decode_image(name: str, blob: bytes, image_size: int | None, center_crop: bool) -> np.ndarray:
    """Decode one PNG/JPEG to uint8 (H, W, 1) for grayscale or (H, W, 3); other modes become RGB."""
    try:
        with Image.open(io.BytesIO(blob), formats=_IMAGE_FORMATS) as im:
            im.load()
            if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
                raise DataError(f"{name}: image mode {im.mode} is not 8-bit, expected 8-bit grey or colour")
            if im.mode in _GRAY_MODES:
                im = im.convert("L") if im.mode != "L" else im
            elif im.mode != "RGB":
                im = im.convert("RGB")
            if center_crop and im.width != im.height:
                side = min(im.width, im.height)
                left, top = (im.width - side) // 2, (im.height - side) // 2
                im = im.crop((left, top, left + side, top + side))
            if image_size is not None and im.size != (image_size, image_size):
                # Pillow's BICUBIC widens the kernel when downscaling, i.e. it antialiases.
                im = im.resize((image_size, image_size), Image.Resampling.BICUBIC)
            arr = np.asarray(im)
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{name}: not a decodable PNG/JPEG image ({e})") from None
    return arr[:, :, None] if arr.ndim == 2 else arr


def _decode_all(
    items: Sequence[tuple[str, Callable[[], bytes]]], image_size: int | None, center_crop: bool
) -> list[np.ndarray]:
    """Decode (name, blob loader) pairs in order; a thread pool is used for large images only."""

    def one(item: tuple[str, Callable[[], bytes]]) -> np.ndarray | DataError:
        try:
            return _decode_image(item[0], item[1](), image_size, center_crop)
        except DataError as e:
            return e

    sample = [len(load()) for _, load in items[:16]]
    threaded = (os.cpu_count() or 1) > 1 and np.mean(sample) >= _THREADED_DECODE_MIN_BYTES
    if threaded:
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            results = list(pool.map(one, items, chunksize=16))
    else:
        results = [one(item) for item in items]
    for r in results:  # first failure in path order, so the error is deterministic
        if isinstance(r, DataError):
            raise r
    return results  # type: ignore[return-value]


def _assemble(
    source: PathLike, names: Sequence[str], arrays: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Stack decoded images and derive labels from the first path component of `names`."""
    # Mixed grey/colour folders are common (e.g. a few grey JPEGs in a colour set): promote grey.
    if any(a.shape[2] == 3 for a in arrays):
        arrays = [np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in arrays]
    first = arrays[0].shape
    for name, a in zip(names, arrays, strict=True):
        if a.shape[:2] != first[:2]:
            # The config has no resize field (launch.py cannot resize): the files must be fixed.
            raise DataError(
                f"{source}: image {name} is {a.shape[1]}x{a.shape[0]} but {names[0]} is "
                f"{first[1]}x{first[0]}; resize the images to one size (no config field does it; "
                "from Python, load_arrays(..., image_size=N) does)"
            )
    images = np.stack(arrays)
    parts = [n.split("/") for n in names]
    # A single top-level folder holding everything (e.g. `celeba64/` in a tar) is a wrapper,
    # not a class: strip it so labels come from the folders below it, if any.
    while all(len(p) > 1 for p in parts) and len({p[0] for p in parts}) == 1:
        parts = [p[1:] for p in parts]
    nested = [len(p) > 1 for p in parts]
    if not any(nested):
        return images, None, []
    if not all(nested):
        top = names[nested.index(False)]
        raise DataError(
            f"{source}: image {top} is at the top level while others are in class subfolders, "
            "expected one or the other"
        )
    class_names = sorted({p[0] for p in parts})
    index = {c: i for i, c in enumerate(class_names)}
    labels = np.array([index[p[0]] for p in parts], np.int64)
    return images, labels, class_names


def _check_image_size(image_size: int | None) -> None:
    if image_size is not None and (isinstance(image_size, bool) or int(image_size) != image_size
                                   or image_size < 1):
        raise DataError(f"image_size {image_size!r} is not accepted, expected a positive int or None")


def read_image_folder(
    path: PathLike, image_size: int | None = None, center_crop: bool = False
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Read every PNG/JPEG under folder `path` (recursively, sorted by relative path).

    Hidden files and folders (name starting with '.') are ignored; any other file must decode as
    PNG or JPEG. When images live in subfolders, labels index the sorted immediate subfolder names
    (a single wrapper folder holding everything is skipped). With `center_crop`, each image is
    cropped to its central square; with `image_size`, it is resized (bicubic, antialiased) to
    image_size x image_size.

    Returns:
        images: uint8 (N, H, W, C), C = 1 (all grey) or 3. labels: int64 (N,) or None.
        class_names: list of N_classes subfolder names ([] when labels is None).
    """
    _check_image_size(image_size)
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found" if not root.exists() else f"{root}: not a folder")
    rels = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel_dir = Path(dirpath).relative_to(root)
        rels.extend((rel_dir / f).as_posix() for f in filenames if not f.startswith("."))
    if not rels:
        raise DataError(f"{root}: no images found, expected PNG/JPEG files in the folder or its subfolders")
    rels.sort()
    items = [(str(root / r), (lambda p=root / r: p.read_bytes())) for r in rels]
    arrays = _decode_all(items, image_size, center_crop)
    return _assemble(root, rels, arrays)


def read_image_tar(
    path: PathLike, image_size: int | None = None, center_crop: bool = False
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Read every PNG/JPEG in a .tar or .tar.gz archive; same conventions as `read_image_folder`.

    A truncated archive (cut inside a member or missing the end-of-archive zero block) raises.
    """
    _check_image_size(image_size)
    data = read_bytes(path)
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
            for m in tf:
                name = m.name
                while name.startswith("./"):
                    name = name[2:]
                if not (m.isfile() or m.islnk()):
                    continue
                if any(part.startswith(".") for part in name.split("/")):
                    continue
                blob = tf.extractfile(m).read()
                if len(blob) != m.size:
                    raise DataError(f"{path}: truncated tar, member {name} has {len(blob)} of {m.size} bytes")
                members[name] = blob
            end = tf.offset
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{path}: truncated or corrupt tar archive ({e})") from None
    # tarfile treats a file cut at a header boundary as a normal end; a real archive ends in zeros.
    if data[end : end + tarfile.BLOCKSIZE] != bytes(tarfile.BLOCKSIZE):
        raise DataError(f"{path}: truncated tar archive (no end-of-archive block after byte {end})")
    if not members:
        raise DataError(f"{path}: no images found in the tar archive, expected PNG/JPEG members")
    names = sorted(members)
    items = [(f"{path}:{n}", (lambda b=members[n]: b)) for n in names]
    arrays = _decode_all(items, image_size, center_crop)
    return _assemble(path, names, arrays)


def read_npz(path: PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a .npz with key `x` (uint8 (N, H, W, C) with C in {1, 3}, or (N, H, W)) and optional `y`.

    Returns:
        images: uint8 (N, H, W, C). labels: int64 (N,) of non-negative integers, or None.
    """
    try:
        npz = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable .npz archive ({e})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: a single .npy array, expected a .npz archive with key 'x'")
    try:
        if "x" not in npz.files:
            raise DataError(f"{path}: no key 'x' in the .npz (keys: {', '.join(npz.files) or 'none'})")
        x = npz["x"]
        y = npz["y"] if "y" in npz.files else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: corrupt .npz member ({e})") from None
    finally:
        npz.close()
    if x.dtype != np.uint8:
        raise DataError(f"{path}: x has dtype {x.dtype}, expected uint8")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or 0 in x.shape:
        raise DataError(f"{path}: x has shape {x.shape}, expected (N, H, W) or (N, H, W, C) with C 1 or 3")
    if y is None:
        return x, None
    if y.shape != (x.shape[0],):
        raise DataError(f"{path}: y has shape {y.shape}, expected ({x.shape[0]},) to match x")
    if not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
        raise DataError(f"{path}: y has dtype {y.dtype} or negative values, expected non-negative integers")
    return x, y.astype(np.int64)

