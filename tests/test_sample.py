"""--mode=sample streams samples.npz chunk by chunk: the file reads back as np.savez's would, the
first N samples do not depend on how many are drawn, a count that does not fit on the disk is
refused before anything is written, and a failure midway leaves the previous samples.npz."""

import importlib.util
import os
import pathlib
import shutil
import types

import jax
import numpy as np
import pytest
from conftest import once_per_process

from gan_jax import sample as sample_mod
from gan_jax import sampling
from gan_jax.errors import UserError
from gan_jax.experiment import Experiment
from gan_jax.npz_stream import NpzStreamWriter

REPO = pathlib.Path(__file__).resolve().parents[1]


def smoke_config(name):
    """The smoke config of experiment NAME ('quickstart', 'gan_mixture:ring')."""
    file, _, word = name.partition(":")
    spec = importlib.util.spec_from_file_location(file, REPO / "experiments" / f"{file}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = module.get_config(f"{word},smoke" if word else "smoke")
    devices = jax.device_count()  # 8 fake ones here (conftest.py); gan_mixture's batch is 100
    cfg.data.batch_size = -(-cfg.data.batch_size // devices) * devices
    return cfg


@pytest.fixture(scope="module")
@once_per_process
def trained(tmp_path_factory):
    """name -> (workdir, config) of a smoke run trained in-process, one per experiment."""
    from gan_jax.training import train

    runs = {}

    def get(name):
        if name not in runs:
            workdir = str(tmp_path_factory.mktemp(name.replace(":", "_")))
            cfg = smoke_config(name)
            train(cfg, workdir)
            runs[name] = workdir, cfg
        return runs[name]

    return get


def fresh_copy(src, dst):
    """A copy of a trained workdir without any samples, so that each test writes its own."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("samples.npz*"))
    return str(dst)


def disk(free):
    """What shutil.disk_usage returns, for a disk with `free` bytes free."""
    return types.SimpleNamespace(total=10**12, used=10**12 - free, free=free)


def load(path, name):
    with np.load(path) as f:
        assert list(f.keys()) == [name]
        return f[name]


# --- the writer ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name,array", [
    ("images", np.random.default_rng(0).integers(0, 256, (23, 5, 4, 3), dtype=np.uint8)),
    ("points", np.random.default_rng(1).normal(size=(23, 2)).astype(np.float32)),
])
def test_streamed_npz_reads_back_as_savez(tmp_path, name, array):
    expected = tmp_path / "expected.npz"
    np.savez(expected, **{name: array})
    path = tmp_path / "streamed.npz"
    with NpzStreamWriter(str(path), name, array.shape, array.dtype) as w:
        for i in range(0, len(array), 7):  # 7 does not divide 23: a short last chunk
            w.write(array[i:i + 7])
    got = load(path, name)
    assert got.dtype == array.dtype and got.shape == array.shape
    np.testing.assert_array_equal(got, load(expected, name))
    assert sorted(os.listdir(tmp_path)) == ["expected.npz", "streamed.npz"]


def test_writer_refuses_missing_or_extra_rows_and_leaves_target(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, points=np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match="2 of 3 rows written"):
        with NpzStreamWriter(str(path), "points", (3, 2), np.float32) as w:
            w.write(np.ones((2, 2), np.float32))
    with pytest.raises(ValueError, match="overruns"):
        with NpzStreamWriter(str(path), "points", (3, 2), np.float32) as w:
            w.write(np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match="does not fit"):
        with NpzStreamWriter(str(path), "points", (3, 2), np.float32) as w:
            w.write(np.ones((3, 2), np.float64))
    np.testing.assert_array_equal(load(path, "points"), np.zeros((1, 2), np.float32))
    assert os.listdir(tmp_path) == ["x.npz"]


# --- sample() -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name,key,shape,dtype,chunk,few,many", [
    # Chunks smaller than the sampler's batch of 500; then larger, with the first 700 of 2,500 samples
    # (chunks 1200, 1200, 100) drawn as 700 alone: in either, the short chunks must not round otherwise.
    ("quickstart", "images", (28, 28, 1), np.uint8, 7, 10, 23),
    ("gan_mixture:ring", "points", (2,), np.float32, 7, 10, 23),
    ("gan_mixture:ring", "points", (2,), np.float32, 1200, 700, 2500),
])
def test_first_samples_do_not_depend_on_the_count(trained, tmp_path, monkeypatch, name, key, shape, dtype, chunk,
                                                  few, many):
    src, cfg = trained(name)
    # raising=False: on code without chunks the test still runs, and fails on what it checks.
    monkeypatch.setattr(sampling, "CHUNK", chunk, raising=False)
    few_dir, many_dir = fresh_copy(src, tmp_path / "few"), fresh_copy(src, tmp_path / "many")
    sample_mod.sample(few_dir, few, cfg=cfg)
    sample_mod.sample(many_dir, many, cfg=cfg)
    a, b = load(os.path.join(few_dir, "samples.npz"), key), load(os.path.join(many_dir, "samples.npz"), key)
    assert a.shape == (few, *shape) and b.shape == (many, *shape) and a.dtype == b.dtype == dtype
    np.testing.assert_array_equal(a, b[:few])
    assert len(np.unique(b.reshape(many, -1), axis=0)) == many  # every chunk has its own key
    step = max(int(s) for s in os.listdir(os.path.join(few_dir, "checkpoints")) if s.isdigit())
    assert os.path.getsize(os.path.join(few_dir, f"samples_step_{step:07d}.png")) > 0


def test_samples_beyond_one_chunk_match_the_sampler_per_chunk(trained, tmp_path, monkeypatch):
    src, cfg = trained("gan_mixture:ring")
    monkeypatch.setattr(sampling, "CHUNK", 4, raising=False)
    workdir = fresh_copy(src, tmp_path / "run")
    sample_mod.sample(workdir, 10, cfg=cfg)
    exp, step, state = sampling.restore(workdir, None, cfg)
    base = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 2**31 - 3), step)
    expected = np.concatenate([exp.sample(state, 4, key=jax.random.fold_in(base, i)) for i in range(3)])[:10]
    np.testing.assert_array_equal(load(os.path.join(workdir, "samples.npz"), "points"), expected.astype(np.float32))


def test_count_that_does_not_fit_on_disk_is_refused_before_writing(trained, tmp_path, monkeypatch):
    src, cfg = trained("quickstart")
    workdir = fresh_copy(src, tmp_path / "run")
    before = sorted(os.listdir(workdir))
    free = 16 * 2**20 + 100 * 28 * 28  # the margin and exactly 100 images
    monkeypatch.setattr(shutil, "disk_usage", lambda p: disk(free))
    drawn = []
    monkeypatch.setattr(sampling, "sample_chunks", lambda *a: drawn.append(a) or iter(()), raising=False)
    with pytest.raises(UserError) as e:
        sample_mod.sample(workdir, 1000, cfg=cfg)
    assert str(e.value) == (f"--num_samples=1000 needs 0.0176 GB for samples.npz in {workdir} but only 0.0169 GB "
                            f"are free; accepted: at most 100 samples here")
    assert not drawn and sorted(os.listdir(workdir)) == before
    monkeypatch.undo()
    monkeypatch.setattr(shutil, "disk_usage", lambda p: disk(free))
    sample_mod.sample(workdir, 100, cfg=cfg)  # the bound is exact
    assert load(os.path.join(workdir, "samples.npz"), "images").shape == (100, 28, 28, 1)


def test_disk_check_counts_a_stale_temporary_file_as_free(tmp_path, monkeypatch):
    path = str(tmp_path / "samples.npz")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: disk(sample_mod.DISK_MARGIN_BYTES + 10 * 784))
    with pytest.raises(UserError, match=r"^--num_samples=1000000000 needs 784 GB for samples.npz in .* but only "
                                        r"0.0168 GB are free; accepted: at most 10 samples here$"):
        sample_mod.check_disk_space(path, 10**9, 784)
    sample_mod.check_disk_space(path, 10, 784)
    with pytest.raises(UserError, match="at most 10 samples"):
        sample_mod.check_disk_space(path, 11, 784)
    pathlib.Path(path + ".tmp").write_bytes(b"\0" * 784)  # a killed run's, overwritten by the next
    sample_mod.check_disk_space(path, 11, 784)


@pytest.mark.parametrize("num", [0, -5])
def test_non_positive_count_is_refused(tmp_path, num):
    with pytest.raises(UserError, match=f"--num_samples={num} must be positive"):
        sample_mod.sample(str(tmp_path), num)
    assert os.listdir(tmp_path) == []


def test_failure_midway_keeps_previous_samples_and_no_temporary_file(trained, tmp_path, monkeypatch):
    src, cfg = trained("gan_mixture:ring")
    workdir = fresh_copy(src, tmp_path / "run")
    monkeypatch.setattr(sampling, "CHUNK", 4, raising=False)
    sample_mod.sample(workdir, 6, cfg=cfg)
    path = os.path.join(workdir, "samples.npz")
    previous = pathlib.Path(path).read_bytes()
    before = sorted(os.listdir(workdir))

    real_sample = Experiment.sample
    calls = []

    def failing_sample(self, *args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise RuntimeError("device lost")
        return real_sample(self, *args, **kwargs)

    monkeypatch.setattr(Experiment, "sample", failing_sample)
    with pytest.raises(RuntimeError, match="device lost"):
        sample_mod.sample(workdir, 10, cfg=cfg)
    assert len(calls) == 2
    assert pathlib.Path(path).read_bytes() == previous
    assert sorted(os.listdir(workdir)) == before
