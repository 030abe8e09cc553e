"""Labels through the input pipeline, and sampling per class (gan_jax/sampling.py class_cycle,
sample_chunks; grids.py's rows per class) for class-conditional runs, against definitions: the
data's labels at the pipeline's indices, the generator applied directly to a sample's latent and class."""

import os
import pathlib
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import once_per_process, process_env
from PIL import Image

from gan_jax import data, grids, sampling
from gan_jax.config import base_config
from gan_jax.data.pipeline import InputPipeline
from gan_jax.errors import ConfigError, UserError
from gan_jax.experiment import Experiment
from gan_jax.step import train_arrays

REPO = pathlib.Path(__file__).resolve().parents[1]
ACCEPTED = r"accepted: a class in \[0, 10\), several \(0,1,2, or a list of them\), or 'all'$"


def _config(**fields):
    c = base_config()
    c.data.name, c.data.source, c.data.batch_size = "quickstart_digits", "embedded", 16
    c.model.name, c.model.num_classes, c.model.latent_dim = "dcgan_tutorial", 10, 8
    c.model.generator_width = c.model.discriminator_width = 8
    for field, value in fields.items():
        section, name = field.split(".")
        c[section][name] = value
    return c


@pytest.fixture(scope="module")
@once_per_process
def conditional():
    """An initialized conditional run (no training needed to test where its samples come from): its
    Experiment, state with G's parameters moved off their start (class BatchNorm would otherwise make
    every class alike) and the data's arrays."""
    exp = Experiment(_config())
    state = exp.init_state()
    leaves, treedef = jax.tree.flatten(state.params["generator"])
    moved = [w + 0.1 * jax.random.normal(jax.random.PRNGKey(i), w.shape) for i, w in enumerate(leaves)]
    state = state.replace(params={**state.params, "generator": jax.tree.unflatten(treedef, moved)})
    return exp, state, data.load_arrays("quickstart_digits", "train", "embedded")


def _generator(exp, state, z, labels) -> np.ndarray:
    """G applied directly (no jit, no mesh) in inference mode, as uint8 images."""
    G = exp.nets["generator"]
    out = G.apply({"params": state.params["generator"], "batch_stats": state.batch_stats["generator"]},
                  np.asarray(z), labels=np.asarray(labels, np.int32), train=False)
    return grids.to_uint8(np.asarray(out))


def test_the_pipeline_serves_each_image_with_its_label(conditional):
    exp, _, (images, labels) = conditional
    np.testing.assert_array_equal(exp.labels, labels)
    assert exp.labels.dtype == np.int32
    pipeline = InputPipeline(train_arrays(exp), 16, seed=3, n_critic=2, steps_per_call=2, prefetch=0)
    got_images, got_labels = pipeline.batch(5)
    indices = pipeline.indices(5)
    assert got_labels.shape == indices.shape == (2, 2, 16)
    np.testing.assert_array_equal(got_labels, labels[indices])
    np.testing.assert_array_equal(got_images, images[indices])
    assert not np.array_equal(got_labels, labels[pipeline.indices(7)])  # control: another call's


def test_conditional_configs_refuse_data_without_fitting_labels():
    with pytest.raises(ConfigError, match=r"^model.num_classes=10 needs labelled data; data.name='ring8' split "
                                          r"'train' has no labels$"):
        Experiment(_config(**{"data.name": "ring8", "data.source": "synthetic", "model.name": "mlp_gan"}))
    with pytest.raises(ConfigError, match=r"^model.num_classes=5 is not accepted for data.name='quickstart_digits', "
                                          r"whose labels go up to 9; accepted: >= 10$"):
        Experiment(_config(**{"model.num_classes": 5}))


@pytest.mark.parametrize("given,expected", [(None, list(range(10))), ("all", list(range(10))), (3, [3]),
                                            ("3", [3]), ("0,1,2", [0, 1, 2]), (" 4, 7 ", [4, 7]),
                                            ([2, 2, 5], [2, 2, 5]), (np.array([9, 0]), [9, 0]), (np.int64(6), [6])])
def test_class_cycle_reads_a_class_several_or_all(given, expected):
    cycle = sampling.class_cycle(10, given, "--labels={!r}")
    assert cycle.dtype == np.int32 and cycle.tolist() == expected
    np.testing.assert_array_equal(sampling.labels_at(np.array(expected, np.int32), 3, 5),
                                  [expected[j % len(expected)] for j in range(3, 8)])


@pytest.mark.parametrize("given", ["x", "10", "-1", "1,,2", "", "3.0", 3.5, True, [], [[1]], [1, 10], [0.0, 1.0]])
def test_class_cycle_refuses_in_one_line_naming_how_the_labels_were_given(given):
    with pytest.raises(UserError, match=rf"^--labels={re.escape(repr(given))} is not accepted; {ACCEPTED}"):
        sampling.class_cycle(10, given, "--labels={!r}")
    assert sampling.class_cycle(0, None, "--labels={!r}") is None
    with pytest.raises(UserError, match=r"^run.sample\(labels=3\): the run is unconditional \(model.num_classes=0\); "
                                        r"accepted: no labels$"):
        sampling.class_cycle(0, 3, "run.sample(labels={!r})")


def test_sample_j_is_the_generator_on_latent_j_and_its_class(conditional):
    """sample_chunks(labels='0,1,2'): sample j is G(z_j, j % 3), z_j row j of chunk 0's latent draw
    fold_in(key, 0) (the draw of an unconditional run of the seed); controls: other classes."""
    exp, state, _ = conditional
    key = sampling.samples_key(exp.seed, 0)
    got = np.concatenate([grids.to_uint8(c) for c in sampling.sample_chunks(exp, state, key, 12, "0,1,2")])
    z = jax.random.normal(jax.random.fold_in(key, 0), (500, 8))[:12]  # a chunk draws SAMPLE_BATCH multiples
    classes = np.arange(12) % 3
    expected = _generator(exp, state, z, classes)
    assert np.abs(got.astype(int) - expected).max() <= 1  # one rounding step of the uint8 conversion
    assert np.abs(got.astype(int) - _generator(exp, state, z, (classes + 1) % 3)).mean() > 5
    threes = np.concatenate([grids.to_uint8(c) for c in sampling.sample_chunks(exp, state, key, 12, 3)])
    assert np.abs(threes.astype(int) - _generator(exp, state, z, np.full(12, 3))).max() <= 1


def test_by_class_lays_out_a_row_per_class():
    images = np.arange(7, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 1), np.uint8)
    labels = np.array([5, 1, 5, 1, 1, 5, 5])
    rows = grids.by_class(images, labels, columns=3)
    assert rows.shape == (6, 2, 2, 1)
    assert rows[:, 0, 0, 0].tolist() == [1, 3, 4, 0, 2, 5]  # class 1: images 1, 3, 4; class 5: 0, 2, 5
    assert grids.by_class(images, labels, columns=4)[:, 0, 0, 0].tolist() == [1, 3, 4, 255, 0, 2, 5, 6]


def test_the_training_grid_has_a_row_per_class_of_the_same_latents(conditional, tmp_path):
    exp, state, _ = conditional
    (tmp_path / "samples").mkdir()
    path = grids.write_samples(exp, state, str(tmp_path), 0, True)
    shown = np.asarray(Image.open(path))[::2, ::2]  # saved at scale 2
    assert shown.shape == (10 * 30 + 2, 8 * 30 + 2)
    z = np.asarray(exp.fixed_latents(grids.COLUMNS))
    for c in (0, 4, 9):
        row = _generator(exp, state, z, np.full(8, c))[..., 0]
        cells = [shown[2 + c * 30:2 + c * 30 + 28, 2 + j * 30:2 + j * 30 + 28] for j in range(8)]
        assert max(np.abs(cell.astype(int) - r).max() for cell, r in zip(cells, row, strict=True)) <= 1
        other = _generator(exp, state, z, np.full(8, (c + 1) % 10))[..., 0]
        assert np.mean([np.abs(cell.astype(int) - r).mean() for cell, r in zip(cells, other, strict=True)]) > 5


def test_an_unconditional_run_refuses_labels_and_labels_need_the_sample_mode(tmp_path):
    """The run of tests/data/workdir_0465bee (unconditional, written before model.num_classes existed)."""
    workdir = tmp_path / "old"
    shutil.copytree(REPO / "tests" / "data" / "workdir_0465bee", workdir)
    env = process_env()
    out = subprocess.run([sys.executable, "launch.py", "--mode=sample", "--workdir", str(workdir), "--labels=3"],
                         cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1] == (
        "error: --labels='3': the run is unconditional (model.num_classes=0); accepted: no labels"), out.stderr
    assert not (workdir / "samples.npz").exists()
    out = subprocess.run([sys.executable, "launch.py", "--mode=eval", "--workdir", str(workdir), "--labels=3"],
                         cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1] == (
        "error: --labels=3 is not accepted with --mode=eval; accepted: --labels with --mode=sample"), out.stderr


def test_the_npz_writer_streams_a_second_array_after_the_first(tmp_path):
    from gan_jax.npz_stream import NpzStreamWriter

    images, labels = np.arange(24, dtype=np.uint8).reshape(6, 2, 2, 1), np.array([3, 1, 4, 1, 5, 9], np.int32)
    path = str(tmp_path / "samples.npz")
    with NpzStreamWriter(path, "images", images.shape, np.uint8) as w:
        for i in (0, 4):
            w.write(images[i:i + 4])
        w.next_array("labels", labels.shape, np.int32)
        w.write(labels[:5])
        w.write(labels[5:])
    np.savez(tmp_path / "reference.npz", images=images, labels=labels)
    with np.load(path) as got, np.load(tmp_path / "reference.npz") as reference:
        assert list(got) == list(reference) == ["images", "labels"]
        for name in reference:
            np.testing.assert_array_equal(got[name], reference[name])
            assert got[name].dtype == reference[name].dtype
    w = NpzStreamWriter(path, "images", images.shape, np.uint8)
    w.write(images[:5])
    with pytest.raises(ValueError, match="5 of 6 rows written in 'images'"):
        w.next_array("labels", labels.shape, np.int32)
    with np.load(path) as kept:  # the previous file, untouched; no temporary file left
        np.testing.assert_array_equal(kept["labels"], labels)
    assert not os.path.exists(NpzStreamWriter.temporary_path(path))
