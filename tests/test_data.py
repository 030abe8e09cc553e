"""Data sets by name, TFDS without TensorFlow, mixtures against their closed form, and the pipeline's
contract: the global batch of step N is a pure function of (seed, N) whatever the processes,
devices, call chunking, resumes or prefetching."""

from __future__ import annotations

import importlib.util
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
import tensorflow_datasets as tfds
from PIL import Image
from tensorflow_datasets.testing import mocking

import gan_jax.data as data
from gan_jax import parallel
from gan_jax.config import base_config
from gan_jax.data import synthetic
from gan_jax.data.pipeline import InputPipeline, epoch_permutation
from gan_jax.errors import ConfigError, DataError
from gan_jax.objectives import build_steps
from gan_jax.objectives.base import to_model_range

# name -> (source, split, images shape, number of label classes or None)
EXPECTED = {
    "mnist": ("files", "train", (60_000, 28, 28, 1), 10),
    "fashion_mnist": ("files", "test", (10_000, 28, 28, 1), 10),
    "cifar10": ("files", "train", (50_000, 32, 32, 3), 10),
    "celeba64": ("files", "train", (10_000, 64, 64, 3), None),
    "binarized_mnist": ("files", "test", (10_000, 28, 28, 1), 10),
    "stacked_mnist": ("files", "train", (60_000, 28, 28, 3), 1000),
    "quickstart_digits": ("embedded", "train", (4_500, 28, 28, 1), 10),
}
# The papers' mixtures written out (PacGAN, Lin et al. 2018, after Metz et al. 2017), not taken from the
# library: 8 Gaussians of std 0.01 on the unit circle at angles 2 pi k / 8, and 25 of std 0.05 at
# {-4, -2, 0, 2, 4}^2.
_H = 0.5**0.5
RING8_MEANS = np.array([[1, 0], [_H, _H], [0, 1], [-_H, _H], [-1, 0], [-_H, -_H], [0, -1], [_H, -_H]], np.float64)
GRID25_MEANS = np.array([[x, y] for x in (-4, -2, 0, 2, 4) for y in (-4, -2, 0, 2, 4)], np.float64)
MIXTURES = {"ring8": (RING8_MEANS, 0.01), "grid25": (GRID25_MEANS, 0.05)}


def test_every_registered_name_is_tested() -> None:
    assert set(data.DATASETS) == set(EXPECTED) | set(MIXTURES)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_registered_name_resolves(request: pytest.FixtureRequest, name: str) -> None:
    source, split, shape, classes = EXPECTED[name]
    if source == "files":  # the embedded digits ship with the install: no data folder needed
        request.getfixturevalue("data_dir")
    images, labels = data.load_arrays(name, split, source)
    assert images.shape == shape and images.dtype == np.uint8
    assert 0 < images.max() and images.std() > 10  # real pictures, not zeros or noise-free constants
    if classes is None:
        assert labels is None
    else:
        assert labels.shape == shape[:1] and labels.dtype == np.int64
        assert labels.min() >= 0 and labels.max() < classes
        assert len(np.unique(labels)) == classes  # every class (every stacked mode) is present
    assert data.get_dataset(name, source).binarize == (name == "binarized_mnist")


@pytest.mark.parametrize("name", sorted(MIXTURES))
def test_mixtures_have_no_arrays(name: str) -> None:
    assert data.get_dataset(name, "synthetic").mixture == name
    with pytest.raises(ConfigError, match="sampled on the fly"):
        data.load_arrays(name, "train", "synthetic")
    with pytest.raises(ConfigError, match="data.source='files' is not accepted"):
        data.get_dataset(name, "files")


def test_stacked_mnist_channels_are_mnist_digits(data_dir: Path) -> None:
    stacked, labels = data.load_arrays("stacked_mnist", "train")
    mnist, mnist_labels = data.load_arrays("mnist", "train")
    label_of = {mnist[i].tobytes(): mnist_labels[i] for i in range(len(mnist))}
    for i in np.random.default_rng(0).choice(len(stacked), 50, replace=False):
        digits = [label_of[np.ascontiguousarray(stacked[i, ..., c : c + 1]).tobytes()] for c in range(3)]
        assert labels[i] == 100 * digits[0] + 10 * digits[1] + digits[2]


@pytest.mark.parametrize("name", sorted(MIXTURES))
def test_mixture_matches_closed_form(name: str) -> None:
    means, std = MIXTURES[name]
    n = 100_000
    points = np.asarray(jax.jit(synthetic.sample_mixture, static_argnums=(0, 2))(name, jax.random.key(3), n))
    assert points.shape == (n, 2) and points.dtype == np.float32
    nearest = np.argmin(((points[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert np.abs(points - means[nearest]).max() < 6 * std  # components far apart: assignment is exact
    counts = np.bincount(nearest, minlength=len(means))
    assert scipy.stats.chisquare(counts).pvalue > 1e-3  # uniform weights
    for k in range(len(means)):
        component = points[nearest == k]
        np.testing.assert_allclose(component.mean(0), means[k], atol=5 * std / np.sqrt(len(component)))
        np.testing.assert_allclose(component.std(0), std, rtol=0.04)


# --- generic paths and bad input -----------------------------------------------------------------
def test_generic_paths(tmp_path: Path) -> None:
    x = np.random.default_rng(0).integers(0, 256, (12, 6, 6, 3), dtype=np.uint8)
    np.savez(tmp_path / "mine.npz", x=x, y=np.arange(12))
    images, labels = data.load_arrays(str(tmp_path / "mine.npz"), "train")
    np.testing.assert_array_equal(images, x)
    np.testing.assert_array_equal(labels, np.arange(12))
    folder = tmp_path / "faces"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((20, 30, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    images, labels = data.load_arrays(str(folder), "train", image_size=8, center_crop=True)
    assert images.shape == (3, 8, 8, 3) and labels is None
    with pytest.raises(DataError, match="data path not found"):
        data.load_arrays(str(tmp_path / "missing.npz"), "train")
    with pytest.raises(ConfigError, match="apply to image folders and tars only"):
        data.load_arrays("quickstart_digits", "train", "embedded", image_size=32)


def test_mixed_size_folder_says_to_resize_the_images(tmp_path: Path) -> None:
    """No config field resizes images: the hint must not send the user to one (data.image_size)."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "a.png")
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(folder / "b.png")
    with pytest.raises(DataError) as info:
        data.load_arrays(str(folder), "train")
    message = str(info.value)
    assert "b.png is 8x9 but a.png is 8x8" in message and "resize the images to one size" in message
    assert "no config field" in message and "data.image_size" not in message and "\n" not in message
    assert "image_size" not in set(base_config().data)  # if one is added, the hint should name it
    images, _ = data.load_arrays(str(folder), "train", image_size=8)  # what the hint says Python can do
    assert images.shape == (2, 8, 8, 3)


def test_bad_names_sources_and_loaders(monkeypatch: pytest.MonkeyPatch) -> None:
    for call, match in ((lambda: data.get_dataset("mnst", "files"), "data.name='mnst' is unknown"),
                        (lambda: data.get_dataset("mnist", "hdf5"), "data.source='hdf5' is unknown"),
                        (lambda: data.load_arrays("quickstart_digits", "val", "embedded"),
                         "unknown split 'val'")):
        with pytest.raises((ConfigError, DataError), match=match) as info:
            call()
        assert "\n" not in str(info.value)
    # Whatever a user-registered loader returns is checked before anything trains on it.
    floats = data.Dataset("floats", lambda *a: (np.zeros((4, 2, 2, 1)), None), ("files",))
    monkeypatch.setitem(data.DATASETS, "floats", floats)
    with pytest.raises(DataError, match="images float64 .* expected uint8"):
        data.load_arrays("floats", "train")


# --- TFDS, without TensorFlow --------------------------------------------------------------------
class GanJaxTestDigits(tfds.core.GeneratorBasedBuilder):
    """A real array_record TFDS data set, prepared here without TensorFlow (a Tensor image feature:
    PNG encoding would need TensorFlow, decoding does not)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=10)}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 1500), "test": self._generate_examples(1, 10)}

    def _generate_examples(self, seed: int, n: int):
        for i in range(n):
            yield i, {"image": np.full((8, 8, 1), (seed * 7 + i) % 250, np.uint8), "label": i % 10}


class _DataSourceMock(mocking.PickableDataSourceMock):
    """tfds 4.9.10's mock sets `__getitems__` as an unbound partial (MagicMock only binds real
    magic methods), so batched reads fail with a TypeError; bind it like `__getitem__`."""

    def __setattr__(self, name, value):
        if name == "__getitems__":
            value = types.MethodType(value, self)
        super().__setattr__(name, value)


@pytest.fixture
def tfds_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "_TFDS_CACHE", {})  # mocked arrays must not outlive the test


def test_tensorflow_is_not_installed() -> None:
    assert importlib.util.find_spec("tensorflow") is None


def test_tfds_mock_data(tfds_cache: None) -> None:
    n = 40
    with tfds.testing.mock_data(num_examples=n, policy=tfds.testing.MockPolicy.USE_CODE,
                                mock_array_record_data_source=_DataSourceMock()):
        reference = tfds.data_source("mnist", split="train", download=False)
        expected = np.stack([reference[i]["image"] for i in range(n)])
        images, labels = data.load_arrays("mnist", "train", "tfds", data_dir="/nonexistent")
        stacked, stacked_labels = data.load_arrays("stacked_mnist", "train", "tfds")
        cifar, _ = data.load_arrays("cifar10", "test", "tfds")
    assert images.shape == (n, 28, 28, 1) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, expected)
    assert labels.dtype == np.int64 and labels.min() >= 0 and labels.max() < 10
    assert stacked.shape == (n, 28, 28, 3) and stacked_labels.max() < 1000
    assert cifar.shape == (n, 32, 32, 3)
    assert not images.flags.writeable


def test_tfds_array_record_without_tensorflow(tmp_path: Path, tfds_cache: None) -> None:
    GanJaxTestDigits(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    images, labels = data.load_arrays("gan_jax_test_digits", "train", "tfds", str(tmp_path))
    assert images.shape == (1500, 8, 8, 1) and labels.shape == (1500,)
    # TFDS shuffles records at preparation; each record still carries its own label.
    np.testing.assert_array_equal(images[:, 0, 0, 0] % 10, labels)
    assert sorted(images[:, 0, 0, 0].tolist()) == sorted(i % 250 for i in range(1500))
    with pytest.raises(DataError, match="split 'validation'.*Unknown split 'validation'") as info:
        data.load_arrays("gan_jax_test_digits", "validation", "tfds", str(tmp_path))
    assert "\n" not in str(info.value)
    # A truncated copy fails loudly, naming the data set and the problem.
    (path,) = tmp_path.glob("gan_jax_test_digits/1.0.0/*-train.array_record*")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    data._TFDS_CACHE.clear()
    with pytest.raises(DataError, match="tfds 'gan_jax_test_digits' split 'train'.*cannot read records"):
        data.load_arrays("gan_jax_test_digits", "train", "tfds", str(tmp_path))


def test_tfds_missing_and_unprepared(tmp_path: Path, tfds_cache: None) -> None:
    with pytest.raises(DataError, match="tfds 'no_such_set_xyz' .*not found") as info:
        data.load_arrays("no_such_set_xyz", "train", "tfds", str(tmp_path))
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="tfds 'mnist' .*not prepared as array_record"):
        data.load_arrays("mnist", "train", "tfds", str(tmp_path))


# --- the pipeline --------------------------------------------------------------------------------
def coded(n: int) -> np.ndarray:
    """Examples whose value is their index, so a batch shows which examples it holds."""
    return np.arange(n, dtype=np.int64)[:, None]


def test_batch_is_the_epoch_permutation_stream() -> None:
    n, b, c, k, seed = 100, 24, 2, 3, 5
    pipe = InputPipeline(coded(n), b, seed, n_critic=c, steps_per_call=k, process_index=0, process_count=1)
    for step in (0, 1, 4, 17):  # step 4 onwards crosses epoch boundaries inside one call
        got = pipe.batch(step)[..., 0]
        for s in range(k):
            for i in range(c):
                for j in range(b):
                    p = ((step + s) * c + i) * b + j
                    assert got[s, i, j] == epoch_permutation(seed, p // n, n)[p % n]
    assert not np.array_equal(epoch_permutation(seed, 0, n), epoch_permutation(seed, 1, n))
    assert not np.array_equal(epoch_permutation(seed, 0, n), epoch_permutation(seed + 1, 0, n))


@pytest.mark.parametrize("processes", [2, 4])
def test_same_global_batch_for_any_process_count(processes: int) -> None:
    kwargs = dict(global_batch_size=32, seed=1, n_critic=2, steps_per_call=2)
    one = InputPipeline(coded(50), process_index=0, process_count=1, **kwargs)
    parts = [InputPipeline(coded(50), process_index=p, process_count=processes, **kwargs)
             for p in range(processes)]
    assert parts[0].local_batch_size == 32 // processes
    for step in (0, 3, 10):
        np.testing.assert_array_equal(np.concatenate([p.batch(step) for p in parts], axis=2), one.batch(step))


def test_resume_and_rechunking_see_the_same_batches() -> None:
    images = coded(70)
    with InputPipeline(images, 16, 9, process_index=0, process_count=1) as run:
        first = [run.get(step) for step in range(12)]
    with InputPipeline(images, 16, 9, process_index=0, process_count=1) as resumed:
        for step in range(7, 12):
            np.testing.assert_array_equal(resumed.get(step), first[step])
    # Four steps per call (scan) or a vmapped run reading the same stream: the same examples.
    chunked = InputPipeline(images, 16, 9, steps_per_call=4, process_index=0, process_count=1, prefetch=0)
    for call in (0, 4, 8):
        np.testing.assert_array_equal(chunked.get(call), np.concatenate(first[call : call + 4]))


def test_each_example_once_per_epoch() -> None:
    n, b = 960, 64  # 15 steps per epoch
    pipe = InputPipeline(coded(n), b, 2, process_index=0, process_count=1, prefetch=0)
    epochs = [np.concatenate([pipe.batch(s).ravel() for s in range(e * 15, (e + 1) * 15)]) for e in range(3)]
    for seen in epochs:
        np.testing.assert_array_equal(np.sort(seen), np.arange(n))
    assert not np.array_equal(epochs[0], epochs[1])


def test_prefetch_matches_batch_in_any_order(monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = InputPipeline(coded(300), 32, 4, n_critic=2, steps_per_call=2, process_index=0, process_count=1)
    try:
        for step in (0, 2, 4, 4, 10, 12, 6, 0, 7, 9):  # in order, repeated, forward, backward, odd
            np.testing.assert_array_equal(pipe.get(step), pipe.batch(step))
    finally:
        pipe.close()
        pipe.close()
    # An error on the prefetch thread reaches the caller instead of hanging it.
    original = pipe.batch
    monkeypatch.setattr(pipe, "batch", lambda step: original(step) if step < 4 else 1 / 0)
    pipe.get(0)
    pipe.get(2)
    with pytest.raises(ZeroDivisionError):
        pipe.get(4)


def test_pipeline_rejects_bad_config() -> None:
    with pytest.raises(ConfigError, match="data.batch_size=30 is not divisible by the 4 processes"):
        InputPipeline(coded(10), 30, 0, process_index=0, process_count=4)
    with pytest.raises(ConfigError, match="data.seed=-1"):
        InputPipeline(coded(10), 8, -1, process_index=0, process_count=1)
    with pytest.raises(DataError, match="non-empty"):
        InputPipeline(coded(0), 8, 0, process_index=0, process_count=1)


def test_global_array_same_on_8_devices_as_on_1() -> None:
    if jax.device_count() < 8:
        pytest.skip("needs XLA_FLAGS=--xla_force_host_platform_device_count=8 before jax is imported")
    images = np.random.default_rng(0).integers(0, 256, (200, 4, 4, 1), dtype=np.uint8)
    kwargs = dict(global_batch_size=64, seed=3, n_critic=2, steps_per_call=2)
    local = InputPipeline(images, process_index=0, process_count=1, **kwargs).batch(5)
    mesh = parallel.make_mesh()
    sharding = parallel.batch_sharding(mesh, local.ndim, batch_axis=2)
    on_8 = parallel.global_batch_array(local, sharding, batch_axis=2)
    on_1 = jax.device_put(local, jax.devices()[0])
    assert on_8.shape == on_1.shape == local.shape
    np.testing.assert_array_equal(np.asarray(on_8), np.asarray(on_1))
    # Device d holds global rows [8d, 8d + 8): with 2 processes of 4 devices each, a process's
    # devices hold exactly the slice its own pipeline builds.
    for shard in on_8.addressable_shards:
        d = mesh.devices.tolist().index(shard.device)
        np.testing.assert_array_equal(np.asarray(shard.data), local[:, :, 8 * d : 8 * d + 8])
    half = InputPipeline(images, process_index=1, process_count=2, **kwargs).batch(5)
    np.testing.assert_array_equal(half, local[:, :, 32:])


# --- on-device preprocessing ---------------------------------------------------------------------
def test_to_model_range() -> None:
    x = jnp.asarray([0, 128, 255], jnp.uint8)
    np.testing.assert_allclose(to_model_range(x), [-1.0, 2 * 128 / 255 - 1, 1.0], atol=1e-6)
    np.testing.assert_allclose(to_model_range(x, unit_range=True), [0.0, 128 / 255, 1.0], atol=1e-6)
    assert to_model_range(x).dtype == jnp.float32


@pytest.mark.parametrize("objective, flip, binarize, mixture", [
    ("gan", True, False, None), ("vae", False, True, None), ("vae", True, True, None),
    ("gan", False, False, "ring8"),
])
def test_real_examples_are_keyed_per_example(objective: str, flip: bool, binarize: bool,
                                             mixture: str | None) -> None:
    """The full batch on one device equals its two halves on two devices (pmap, example offsets)."""
    cfg = base_config()
    cfg.objective, cfg.data.random_flip, cfg.data.batch_size = objective, flip, 16
    cfg.loss.name = "elbo" if objective == "vae" else cfg.loss.name
    shape = (2,) if mixture else (6, 6, 1)
    batch = np.random.default_rng(1).integers(0, 256, (16, *shape), dtype=np.uint8)
    key = jax.random.key(7)
    full_builder = build_steps(cfg, {}, shape, mixture, binarize)
    full = np.asarray(jax.jit(full_builder.real_examples)(key, None if mixture else batch))
    split_builder = build_steps(cfg, {}, shape, mixture, binarize, axis_name=parallel.PMAP_AXIS)
    halves = jax.pmap(split_builder.real_examples, axis_name=parallel.PMAP_AXIS, in_axes=(None, 0),
                      devices=jax.devices()[:2])(key, batch.reshape(2, 8, *shape))
    np.testing.assert_array_equal(np.asarray(halves).reshape(full.shape), full)
    if flip and not binarize:
        x = np.asarray(to_model_range(batch, unit_range=objective == "vae"))
        # allclose: jit may fuse the scaling differently from the eager reference (1 ulp).
        flipped = [np.allclose(full[i], x[i, :, ::-1], atol=1e-6) for i in range(16)]
        assert all(f or np.allclose(full[i], x[i], atol=1e-6) for i, f in enumerate(flipped))
        assert 0 < sum(flipped) < 16  # a coin per example, not one for the batch
    if binarize:
        assert set(np.unique(full)) <= {0.0, 1.0}


@pytest.mark.parametrize("binarize", [False, True])
def test_real_examples_on_the_sharded_training_batch(binarize: bool) -> None:
    """What train.py feeds the step: `global_batch_array` on the mesh, jitted with its sharding."""
    cfg = base_config()
    cfg.objective, cfg.data.random_flip, cfg.data.batch_size, cfg.loss.name = "vae", True, 16, "elbo"
    builder = build_steps(cfg, {}, (6, 6, 1), None, binarize)
    batch = np.random.default_rng(2).integers(0, 256, (16, 6, 6, 1), dtype=np.uint8)
    sharding = parallel.batch_sharding(parallel.make_mesh(), 4, batch_axis=0)
    key = jax.random.key(11)
    sharded = jax.jit(builder.real_examples, in_shardings=(None, sharding))(
        key, parallel.global_batch_array(batch, sharding, batch_axis=0))
    np.testing.assert_array_equal(np.asarray(sharded), np.asarray(jax.jit(builder.real_examples)(key, batch)))


# --- data.source='auto': local files where data.dir is given, TFDS otherwise --------------------
def test_auto_reads_tfds_without_a_data_dir(tfds_cache: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GAN_JAX_DATA")  # a user without local files
    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE,
                                mock_array_record_data_source=_DataSourceMock()):
        images, labels = data.load_arrays("mnist", "test", "auto", None, tfds_dir=str(tmp_path))
        reference, _ = data.load_arrays("mnist", "test", "tfds", str(tmp_path))
    assert images.shape == (12, 28, 28, 1) and labels.shape == (12,)
    np.testing.assert_array_equal(images, reference)


def test_auto_reads_files_where_a_data_dir_is_given(data_dir: Path) -> None:
    images, labels = data.load_arrays("mnist", "test", "auto", str(data_dir))
    reference, reference_labels = data.load_arrays("mnist", "test", "files", str(data_dir))
    np.testing.assert_array_equal(images, reference)
    np.testing.assert_array_equal(labels, reference_labels)


def test_auto_prepares_a_missing_tfds_data_set_once(tfds_cache: None, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # GanJaxTestDigits "downloads" by generating its examples: the first read prepares it in tfds_dir.
    prepared = []
    original = GanJaxTestDigits.download_and_prepare

    def counting(self, *args, **kwargs):
        prepared.append(kwargs.get("file_format"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GanJaxTestDigits, "download_and_prepare", counting)
    images, _ = data.load_arrays("gan_jax_test_digits", "test", "auto", None, tfds_dir=str(tmp_path))
    assert images.shape == (10, 8, 8, 1) and prepared == ["array_record"]
    data._TFDS_CACHE.clear()
    again, _ = data.load_arrays("gan_jax_test_digits", "test", "auto", None, tfds_dir=str(tmp_path))
    np.testing.assert_array_equal(again, images)
    assert prepared == ["array_record"]  # read from the folder, not prepared again


def test_auto_offline_without_local_data_is_one_line(tfds_cache: None, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(self, *args, **kwargs):
        raise ConnectionError("Failed to establish a new connection")

    monkeypatch.setattr(GanJaxTestDigits, "download_and_prepare", offline)
    with pytest.raises(DataError, match=r"could not be downloaded \(Failed to establish.*--config.data.dir=PATH") \
            as info:
        data.load_arrays("gan_jax_test_digits", "train", "auto", None, tfds_dir=str(tmp_path))
    assert "\n" not in str(info.value)
    monkeypatch.delenv("GAN_JAX_DATA")  # a user without local files
    with pytest.raises(ConfigError, match=r"^data.name='celeba64' is read from local files only.*--config.data.dir"):
        data.load_arrays("celeba64", "train", "auto", None)
    assert data.resolve_source("quickstart_digits", "auto", None) == ("embedded", None)
    assert data.resolve_source("ring8", "auto", "/x") == ("synthetic", "/x")


def test_a_workdir_written_with_source_files_resumes_with_auto_and_a_data_dir(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from gan_jax.config import base_config
    from gan_jax.errors import UserError
    from gan_jax.experiment import check_workdir_config, write_workdir_config

    old = base_config()
    old.data.source, old.data.dir = "files", "/data"
    write_workdir_config(str(tmp_path), old)
    new = base_config()
    new.data.dir = "/elsewhere"  # 'auto' with a data.dir: files, the same data
    assert new.data.source == "auto" and check_workdir_config(str(tmp_path), new)
    new.data.dir = None  # 'auto' without one (nor $GAN_JAX_DATA): TFDS, another source
    monkeypatch.delenv("GAN_JAX_DATA")
    with pytest.raises(UserError, match="data.source: 'files' there, 'tfds' now"):
        check_workdir_config(str(tmp_path), new)


def test_sliced_split_is_the_rows_of_the_split(data_dir: Path) -> None:
    whole, labels = data.load_arrays("mnist", "train", "files", str(data_dir))
    head, head_labels = data.load_arrays("mnist", "train[:50000]", "files", str(data_dir))
    tail, _ = data.load_arrays("mnist", "train[50000:]", "files", str(data_dir))
    assert len(head) == 50_000 and len(tail) == 10_000
    np.testing.assert_array_equal(head, whole[:50_000])
    np.testing.assert_array_equal(head_labels, labels[:50_000])
    np.testing.assert_array_equal(tail, whole[50_000:])
    last, _ = data.load_arrays("mnist", "test[-10:]", "files", str(data_dir))
    np.testing.assert_array_equal(last, data.load_arrays("mnist", "test", "files", str(data_dir))[0][-10:])
    assert data.parse_split("train") == ("train", None)
    for bad in ("train[a:b]", "train[:5", "train[3]"):
        with pytest.raises(ConfigError, match=r"data.split='.*' is not accepted; accepted: NAME or NAME\[START:STOP\]"):
            data.load_arrays("mnist", bad, "files", str(data_dir))
    with pytest.raises(ConfigError, match=r"data.split='train\[70000:\]' selects none of the 60000 examples"):
        data.load_arrays("mnist", "train[70000:]", "files", str(data_dir))
