"""Readers for local data files: exact content of the shared data sets, strict errors, round trips."""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gan_jax.data import readers
from gan_jax.data.files import load_file_dataset
from gan_jax.errors import DataError

# Official MD5s of the uncompressed files, from the data folder's README.md.
IDX_MD5 = {
    ("mnist", "train", "images"): "6bbc9ace898e44ae57da46a324031adb",
    ("mnist", "train", "labels"): "a25bea736e30d166cdddb491f175f624",
    ("mnist", "test", "images"): "2646ac647ad5339dbf082846283269ea",
    ("mnist", "test", "labels"): "27ae3e4e09519cfbb04c329615203637",
    ("fashion_mnist", "train", "images"): "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    ("fashion_mnist", "train", "labels"): "9018921c3c673c538a1fc5bad174d6f9",
    ("fashion_mnist", "test", "images"): "8181f5470baa50b63fa0f6fddb340f0a",
    ("fashion_mnist", "test", "labels"): "15d484375f8d13e6eb1aabb0c3f46965",
}
# The README truncates the train batch MD5s to 8 hex digits.
CIFAR_MD5 = {
    "train": ["5dd7e06a", "5ea93a67", "942cd6a4", "ae636b3b", "53f37980"],
    "test": ["803d5f7f4d78ea53de84dbe85f74fb6d"],
}


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def idx_bytes(arr: np.ndarray, magic: int | None = None) -> bytes:
    """The idx encoding of a uint8 array (header + data), as in the official files."""
    magic = 0x0800 + arr.ndim if magic is None else magic
    return struct.pack(f">I{arr.ndim}I", magic, *arr.shape) + arr.astype(np.uint8).tobytes()


def cifar_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    """CIFAR-10 binary records: label byte, then the R, G, B planes of each image."""
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return np.concatenate([labels.astype(np.uint8)[:, None], planes], axis=1).tobytes()


def assert_data_error(fn, *names: str) -> str:
    with pytest.raises(DataError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message
    for name in names:
        assert name in message, (name, message)
    return message


# ---------------------------------------------------------------- official content of the shared data


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_idx_datasets_match_official_md5(data_dir: Path, name: str, split: str) -> None:
    images, labels = load_file_dataset(name, split, str(data_dir))
    n = 60_000 if split == "train" else 10_000
    assert images.shape == (n, 28, 28, 1) and images.dtype == np.uint8
    assert labels.shape == (n,) and labels.dtype == np.int64
    assert md5(idx_bytes(images[..., 0], 2051)) == IDX_MD5[name, split, "images"]
    assert md5(idx_bytes(labels, 2049)) == IDX_MD5[name, split, "labels"]
    assert set(np.unique(labels)) == set(range(10))


@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar10_matches_official_md5(data_dir: Path, split: str) -> None:
    images, labels = load_file_dataset("cifar10", split, str(data_dir))
    n = 10_000 * len(CIFAR_MD5[split])
    assert images.shape == (n, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (n,) and labels.dtype == np.int64
    for i, expected in enumerate(CIFAR_MD5[split]):
        part = slice(i * 10_000, (i + 1) * 10_000)
        assert md5(cifar_bytes(images[part], labels[part])).startswith(expected), i
    assert np.bincount(labels).tolist() == [n // 10] * 10


def test_celeba64_faces(data_dir: Path) -> None:
    images, labels = load_file_dataset("celeba64", "train", str(data_dir))
    assert images.shape == (10_000, 64, 64, 3) and images.dtype == np.uint8 and labels is None
    # The README documents exactly one pair of byte-identical images.
    assert len({md5(im.tobytes()) for im in images}) == 9_999
    assert 60 < images.mean() < 200 and images.std() > 30


def test_a_second_load_is_served_from_the_cache_without_reading(data_dir: Path, monkeypatch) -> None:
    """The cache returns the same read-only arrays and reads no file (load times: benchmarks)."""
    first = load_file_dataset("mnist", "train", str(data_dir))

    def no_read(path):
        raise AssertionError(f"read {path} again")

    monkeypatch.setattr(readers, "read_idx", no_read)
    again = load_file_dataset("mnist", "train", str(data_dir))
    assert again[0] is first[0] and again[1] is first[1]
    assert not again[0].flags.writeable  # a shared cached array must not be mutable


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    rng = np.random.default_rng(0)
    for arr in (rng.integers(0, 256, (7, 5, 4), dtype=np.uint8), rng.integers(0, 10, 7, dtype=np.uint8),
                rng.integers(0, 256, (2, 3, 4, 5), dtype=np.uint8)):
        data = idx_bytes(arr)
        path = tmp_path / f"a{arr.ndim}.idx"  # the extension is deliberately uninformative
        path.write_bytes(gzip.compress(data) if gz else data)
        out = readers.read_idx(path)
        assert out.dtype == np.uint8 and np.array_equal(out, arr)


def test_idx_round_trip_int16(tmp_path: Path) -> None:
    arr = np.array([[-3, 300], [7, -32768]], np.int16)
    (tmp_path / "a").write_bytes(struct.pack(">III", 0x0B02, 2, 2) + arr.astype(">i2").tobytes())
    out = readers.read_idx(tmp_path / "a")
    assert out.dtype == np.int16 and np.array_equal(out, arr)


@pytest.mark.parametrize("gz", [False, True])
def test_cifar_round_trip(tmp_path: Path, gz: bool) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 6)
    paths = []
    for i in range(2):
        data = cifar_bytes(images[3 * i : 3 * i + 3], labels[3 * i : 3 * i + 3])
        paths.append(tmp_path / f"data_batch_{i + 1}.bin{'.gz' if gz else ''}")
        paths[-1].write_bytes(gzip.compress(data) if gz else data)
    out_images, out_labels = readers.read_cifar10_binary(paths)
    assert out_images.flags.c_contiguous and out_labels.dtype == np.int64
    assert np.array_equal(out_images, images) and np.array_equal(out_labels, labels)


def make_images(rng: np.random.Generator, n: int, shape: tuple[int, ...] = (8, 6, 3)) -> np.ndarray:
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8)


def save_png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(path)


def test_image_folder_with_classes_round_trip(tmp_path: Path) -> None:
    images = make_images(np.random.default_rng(2), 5)
    names = ["dog/b.png", "cat/x.png", "dog/a.png", "cat/sub/y.png", "cat/a.png"]
    for name, im in zip(names, images, strict=True):
        save_png(tmp_path / "ds" / name, im)
    (tmp_path / "ds" / ".DS_Store").write_text("ignored: hidden")
    out, labels, class_names = readers.read_image_folder(tmp_path / "ds")
    order = np.argsort(names)  # sorted by relative path
    assert class_names == ["cat", "dog"]
    assert np.array_equal(out, images[order])
    assert labels.tolist() == [0, 0, 0, 1, 1] and labels.dtype == np.int64


def test_image_folder_grey_and_modes(tmp_path: Path) -> None:
    grey = make_images(np.random.default_rng(3), 2, (5, 4, 1))
    for i, im in enumerate(grey):
        save_png(tmp_path / "g" / f"{i}.png", im)
    out, labels, names = readers.read_image_folder(tmp_path / "g")
    assert out.shape == (2, 5, 4, 1) and np.array_equal(out, grey) and labels is None and names == []
    rgba = make_images(np.random.default_rng(4), 1, (5, 4, 4))[0]
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(rgba[..., :3]).convert("P").save(tmp_path / "p.png")
    (tmp_path / "m").mkdir()
    for name in ("rgba.png", "p.png"):
        (tmp_path / name).rename(tmp_path / "m" / name)
    out, _, _ = readers.read_image_folder(tmp_path / "m")
    assert out.shape == (2, 5, 4, 3)
    assert np.array_equal(out[1], rgba[..., :3])  # 'rgba.png' sorts after 'p.png'
    assert np.array_equal(out[0], np.asarray(Image.open(tmp_path / "m" / "p.png").convert("RGB")))


def test_jpeg_crop_and_resize(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    for i in range(3):
        Image.fromarray(make_images(rng, 1, (30, 40, 3))[0]).save(tmp_path / f"{i}.jpg", quality=90)
    out, _, _ = readers.read_image_folder(tmp_path)
    assert out.shape == (3, 30, 40, 3)
    assert np.array_equal(out[0], np.asarray(Image.open(tmp_path / "0.jpg")))
    small, _, _ = readers.read_image_folder(tmp_path, image_size=16, center_crop=True)
    expected = Image.open(tmp_path / "1.jpg").crop((5, 0, 35, 30)).resize((16, 16), Image.Resampling.BICUBIC)
    assert small.shape == (3, 16, 16, 3) and np.array_equal(small[1], np.asarray(expected))


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_image_tar_round_trip(tmp_path: Path, suffix: str) -> None:
    images = make_images(np.random.default_rng(6), 4)
    for i, im in enumerate(images):
        save_png(tmp_path / "src" / "faces" / f"{i:03d}.png", im)
    path = tmp_path / f"faces{suffix}"
    with tarfile.open(path, "w:gz" if suffix.endswith("gz") else "w") as tf:
        tf.add(tmp_path / "src" / "faces", arcname="faces")
    out, labels, names = readers.read_image_tar(path)
    assert np.array_equal(out, images) and labels is None and names == []
    loaded, no_labels = load_file_dataset(str(path), "train")
    assert np.array_equal(loaded, images) and no_labels is None


def test_npz_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    x, y = make_images(rng, 3, (4, 4)), np.array([2, 0, 1], np.int32)
    np.savez(tmp_path / "a.npz", x=x, y=y)
    out, labels = readers.read_npz(tmp_path / "a.npz")
    assert np.array_equal(out, x[..., None]) and labels.dtype == np.int64 and labels.tolist() == [2, 0, 1]
    np.savez_compressed(tmp_path / "b.npz", x=make_images(rng, 2))
    out, labels = load_file_dataset(str(tmp_path / "b.npz"), "train")
    assert out.shape == (2, 8, 6, 3) and labels is None


def test_generic_idx_layout_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    images, labels = make_images(rng, 3, (6, 6)), np.array([1, 0, 1], np.uint8)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    out, out_labels = load_file_dataset(str(tmp_path), "test")
    assert np.array_equal(out[..., 0], images) and out_labels.tolist() == [1, 0, 1]
    out, out_labels = load_file_dataset(str(tmp_path / "t10k-images-idx3-ubyte.gz"), "train")
    assert np.array_equal(out[..., 0], images) and out_labels.tolist() == [1, 0, 1]


# ---------------------------------------------------------------- bad inputs


def test_idx_wrong_magic(tmp_path: Path) -> None:
    path = tmp_path / "bad-images-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros((2, 3, 3), np.uint8), magic=0x0F03))
    assert_data_error(lambda: readers.read_idx(path), str(path), "magic number 3843", "2051")


def test_idx_truncated_and_trailing(tmp_path: Path) -> None:
    data = idx_bytes(np.zeros((4, 3, 3), np.uint8))
    path = tmp_path / "x.idx"
    path.write_bytes(data[:-5])
    assert_data_error(lambda: readers.read_idx(path), str(path), "truncated", "(4, 3, 3)")
    path.write_bytes(data + b"\0")
    assert_data_error(lambda: readers.read_idx(path), str(path), "trailing bytes")
    path.write_bytes(data[:10])  # inside the dims
    assert_data_error(lambda: readers.read_idx(path), str(path), "truncated idx header")


def test_idx_dims_mismatch_between_files(tmp_path: Path) -> None:
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((4, 3, 3), np.uint8)))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(3, np.uint8)))
    load = lambda: load_file_dataset(str(tmp_path), "train")
    assert_data_error(load, "train-labels-idx1-ubyte", "3 labels")
    (tmp_path / "mnist").mkdir()
    for f in tmp_path.glob("train-*"):
        f.rename(tmp_path / "mnist" / f.name)
    (tmp_path / "mnist" / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(4, np.uint8)))
    # A named set must be complete: 4 images is not MNIST train.
    assert_data_error(lambda: load_file_dataset("mnist", "train", str(tmp_path)), "expected 60000")


def test_gzip_truncated_and_corrupt(tmp_path: Path) -> None:
    data = gzip.compress(idx_bytes(np.random.default_rng(9).integers(0, 256, (50, 20, 20), dtype=np.uint8)))
    path = tmp_path / "x.idx.gz"
    path.write_bytes(data[: len(data) // 2])
    assert_data_error(lambda: readers.read_idx(path), str(path), "truncated gzip")
    path.write_bytes(data[:-3])  # cut inside the CRC/length trailer
    assert_data_error(lambda: readers.read_idx(path), str(path), "gzip")
    corrupt = bytearray(data)
    middle = slice(len(data) // 2, len(data) // 2 + 4)
    corrupt[middle] = bytes(255 - b for b in corrupt[middle])
    path.write_bytes(bytes(corrupt))
    assert_data_error(lambda: readers.read_idx(path), str(path), "gzip")
    path.write_bytes(data + b"garbage")
    assert_data_error(lambda: readers.read_idx(path), str(path), "trailing garbage")


def test_cifar_wrong_length_and_label(tmp_path: Path) -> None:
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(bytes(3073 * 2 + 5))
    assert_data_error(lambda: readers.read_cifar10_binary([path]), str(path), "6151 bytes", "3073")
    record = bytearray(3073 * 2)
    record[3073] = 10
    path.write_bytes(bytes(record))
    assert_data_error(lambda: readers.read_cifar10_binary([path]), str(path), "record 1 has label 10")


def test_image_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    assert_data_error(lambda: readers.read_image_folder(tmp_path / "empty"), "empty", "no images")
    rng = np.random.default_rng(10)
    save_png(tmp_path / "mixed" / "a.png", make_images(rng, 1, (8, 8, 3))[0])
    save_png(tmp_path / "mixed" / "b.png", make_images(rng, 1, (9, 8, 3))[0])
    assert_data_error(lambda: readers.read_image_folder(tmp_path / "mixed"), "b.png", "a.png", "image_size")
    out, _, _ = readers.read_image_folder(tmp_path / "mixed", image_size=4)
    assert out.shape == (2, 4, 4, 3)
    (tmp_path / "mixed" / "notes.txt").write_text("not an image")
    assert_data_error(lambda: readers.read_image_folder(tmp_path / "mixed", 4), "notes.txt", "PNG/JPEG")
    (tmp_path / "mixed" / "notes.txt").unlink()
    (tmp_path / "mixed" / "c.jpg").write_bytes((tmp_path / "mixed" / "a.png").read_bytes()[:60])
    assert_data_error(lambda: readers.read_image_folder(tmp_path / "mixed", 4), "c.jpg")
    assert_data_error(lambda: readers.read_image_folder(tmp_path / "nope"), "nope", "not found")
    assert_data_error(lambda: readers.read_image_folder(tmp_path / "mixed", 0), "image_size 0")


def test_truncated_tar(tmp_path: Path) -> None:
    images = make_images(np.random.default_rng(11), 3, (16, 16, 3))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for i, im in enumerate(images):
            png = io.BytesIO()
            Image.fromarray(im).save(png, format="PNG")
            info = tarfile.TarInfo(f"{i}.png")
            info.size = len(png.getvalue())
            tf.addfile(info, io.BytesIO(png.getvalue()))
    data = buf.getvalue()
    path = tmp_path / "x.tar"
    path.write_bytes(data[:700])  # inside the first member's data
    assert_data_error(lambda: readers.read_image_tar(path), str(path), "truncated")
    second_header = tarfile.open(fileobj=io.BytesIO(data)).getmembers()[1].offset
    path.write_bytes(data[:second_header])  # cut exactly at the next header: tarfile alone misses this
    assert_data_error(lambda: readers.read_image_tar(path), str(path), "truncated tar")
    path.write_bytes(gzip.compress(data)[:-100])
    assert_data_error(lambda: readers.read_image_tar(path), str(path), "gzip")


def test_npz_errors(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    np.savez(path, images=np.zeros((2, 4, 4), np.uint8))
    assert_data_error(lambda: readers.read_npz(path), str(path), "no key 'x'", "images")
    np.savez(path, x=np.zeros((2, 4, 4), np.float32))
    assert_data_error(lambda: readers.read_npz(path), str(path), "float32", "uint8")
    np.savez(path, x=np.zeros((2, 4, 4), np.uint8), y=np.zeros(3, np.int64))
    assert_data_error(lambda: readers.read_npz(path), str(path), "y has shape (3,)")
    path.write_bytes(b"PK\x03\x04 not really a zip")
    assert_data_error(lambda: readers.read_npz(path), str(path), ".npz")


def test_unknown_name_split_and_missing_files(tmp_path: Path) -> None:
    assert_data_error(lambda: load_file_dataset("mnsit", "train", str(tmp_path)), "'mnsit'", "fashion_mnist")
    load = lambda: load_file_dataset("mnist", "valid", str(tmp_path))
    assert_data_error(load, "'valid'", "'train', 'test'")
    assert_data_error(lambda: load_file_dataset("celeba64", "test", str(tmp_path)), "'test'", "'train'")
    assert_data_error(lambda: load_file_dataset("mnist", "train", str(tmp_path)),
                      str(tmp_path / "mnist" / "train-images-idx3-ubyte.gz"), "not found")
    assert_data_error(lambda: load_file_dataset("cifar10", "test", str(tmp_path)), "test_batch.bin")
    assert_data_error(lambda: load_file_dataset("celeba64", "train", str(tmp_path)), "celeba64_10k.tar")
    assert_data_error(lambda: load_file_dataset(str(tmp_path / "x.npz"), "train"), "x.npz", "not found")
