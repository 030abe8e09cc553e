"""The notebook API (gan_jax/api.py): the same runs, samples and evaluations as launch.py."""

import numpy as np
import pytest
from conftest import load_experiment

import gan_jax
from gan_jax.errors import UserError
from gan_jax.sample import sample as sample_to_file


def test_load_config_is_launch_s_config():
    assert gan_jax.load_config("experiments/gan_ring.py:smoke") == load_experiment("gan_ring:smoke")
    assert gan_jax.load_config("gan_ring") == load_experiment("gan_ring")
    with pytest.raises(UserError, match=r"^config 'gan_ring:tiny': unknown variant 'tiny'; accepted: smoke$"):
        gan_jax.load_config("gan_ring:tiny")
    with pytest.raises(UserError, match="no file"):
        gan_jax.load_config("experiments/nothing.py")


def test_train_load_sample_evaluate_and_metrics_of_a_ring_run(tmp_path):
    workdir = tmp_path / "ring"
    cfg = gan_jax.load_config("experiments/gan_ring.py:smoke")
    cfg.data.batch_size = 96  # the tests' 8 devices
    last = gan_jax.train(cfg, workdir)
    assert np.isfinite(last["d_loss"])
    run = gan_jax.load_run(workdir)
    assert run.step == 4 and run.config.data.name == "ring8"
    points = run.sample(7)
    assert points.shape == (7, 2) and points.dtype == np.float32
    # The run's own seed: the first samples of launch.py --mode=sample; another seed: other samples.
    sample_to_file(str(workdir), 9)
    with np.load(workdir / "samples.npz") as f:
        np.testing.assert_array_equal(points, f["points"][:7])
    assert not np.array_equal(run.sample(7, seed=1), points)
    result = run.evaluate(metrics="modes", num_samples=300)
    assert result["step"] == 4 and result["modes"]["samples"] == 300 and 0 <= result["modes"]["modes_captured"] <= 8
    frame = run.metrics
    assert {"step", "d_loss", "g_loss"} <= set(frame.columns) and frame["step"].max() == 4
    assert gan_jax.load_run(workdir, step=2).step == 2
    with pytest.raises(UserError, match=r"^evaluate\(bogus=...\): no field eval.bogus"):
        run.evaluate(bogus=1)


def test_an_image_run_samples_uint8_images(tmp_path):
    gan_jax.train("quickstart:smoke", tmp_path / "q")
    # The training loop refreshes the report's figures with every grid.
    assert (tmp_path / "q" / "curves.png").is_file() and (tmp_path / "q" / "samples" / "progress.gif").is_file()
    images = gan_jax.load_run(tmp_path / "q").sample(5, seed=3)
    assert images.shape == (5, 28, 28, 1) and images.dtype == np.uint8 and images.max() > images.min()
