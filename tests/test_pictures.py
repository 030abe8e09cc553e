"""The report's pictures (gan_jax/pictures.py): slerp and the manifold's quantiles against their closed
forms, the pictures of a VAE's and a GAN's networks against a second code path (the modules applied
directly), pictures that do not apply left out, and report.html showing the ones present."""

import json
import math
import re

import jax
import numpy as np
import pytest
from conftest import load_experiment, once_per_process
from PIL import Image

from gan_jax import data, grids, pictures, report
from gan_jax.experiment import Experiment, write_workdir_config


def test_slerp_ends_norms_and_angles_are_its_closed_form():
    rng = np.random.default_rng(0)
    z0, z1 = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    t = np.linspace(0, 1, 9)
    path = pictures.slerp(z0, z1, t)
    assert path.shape == (5, 9, 7)
    np.testing.assert_allclose(path[:, 0], z0, atol=1e-12)
    np.testing.assert_allclose(path[:, -1], z1, atol=1e-12)
    u0, u1 = z0 / np.linalg.norm(z0, axis=1, keepdims=True), z1 / np.linalg.norm(z1, axis=1, keepdims=True)
    unit = pictures.slerp(u0, u1, t)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=-1), 1.0, atol=1e-12)  # stays on the sphere
    omega = np.arccos(np.sum(u0 * u1, axis=1))
    angle_from_start = np.arccos(np.clip(np.einsum("rtl,rl->rt", unit, u0), -1, 1))
    np.testing.assert_allclose(angle_from_start, t[None, :] * omega[:, None], atol=1e-6)  # constant speed
    e0, e1 = np.eye(3)[:1], np.eye(3)[1:2]
    np.testing.assert_allclose(pictures.slerp(e0, e1, np.array([0.5]))[0, 0], [math.sqrt(0.5)] * 2 + [0], atol=1e-12)
    # control: linear interpolation leaves the sphere
    assert np.abs(np.linalg.norm((u0 + u1) / 2, axis=1) - 1).max() > 0.05
    # a parallel pair has no plane to turn in: the formula's limit, linear interpolation
    np.testing.assert_allclose(pictures.slerp(e0, 3 * e0, np.array([0.5]))[0, 0], [2, 0, 0], atol=1e-12)


def test_manifold_latents_are_normal_quantiles_laid_out_as_a_plot():
    side = 6
    z = pictures.manifold_latents(side).reshape(side, side, 2)
    cdf = lambda x: 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    quantiles = (np.arange(side) + 0.5) / side
    np.testing.assert_allclose(cdf(z[0, :, 0].astype(np.float64)), quantiles, atol=1e-6)  # z_1 along a row
    np.testing.assert_allclose(cdf(z[:, 0, 1].astype(np.float64)), quantiles[::-1], atol=1e-6)  # z_2 down
    assert (z[:, :, 0] == z[:1, :, 0]).all() and (z[:, :, 1] == z[:, :1, 1]).all()


def test_interpolation_latents_are_fixed_slerps():
    z = pictures.interpolation_latents(3, 4, rows=2, steps=5).reshape(2, 5, 4)
    np.testing.assert_array_equal(z, pictures.interpolation_latents(3, 4, rows=2, steps=5).reshape(2, 5, 4))
    np.testing.assert_allclose(z, pictures.slerp(z[:, 0], z[:, -1], np.linspace(0, 1, 5)), atol=1e-6)
    assert not np.allclose(z, pictures.interpolation_latents(4, 4, rows=2, steps=5).reshape(2, 5, 4))


def png_grid(path) -> np.ndarray:
    """A save_grid PNG back as (rows, columns) of its grid image at scale 1."""
    image = np.asarray(Image.open(path))
    return image[::2, ::2]


@pytest.fixture(scope="module")
@once_per_process
def vae_2d():
    """A 2-D latent VAE on the embedded digits, at its initial state."""
    cfg = load_experiment("vae_mnist:smoke")
    cfg.data.name, cfg.data.source, cfg.model.latent_dim = "quickstart_digits", "embedded", 2
    exp = Experiment(cfg, load_train_data=False)
    return exp, exp.init_state()


def test_a_2d_vae_gets_its_manifold_reconstructions_and_interpolations(vae_2d, tmp_path):
    exp, state = vae_2d
    V, params = exp.nets["vae"], jax.device_get(state.params["vae"])
    decode = lambda z: np.asarray(jax.nn.sigmoid(V.apply({"params": params}, z, method=V.decode)))
    from scipy.stats import norm

    q = norm.ppf((np.arange(pictures.MANIFOLD_SIDE) + 0.5) / pictures.MANIFOLD_SIDE)
    z = np.array([[a, b] for b in q[::-1] for a in q], np.float32)
    manifold = pictures.write_manifold(exp, state, str(tmp_path))
    want = grids.grid(grids.to_uint8(decode(z), unit_range=True), pictures.MANIFOLD_SIDE)[..., 0]
    assert np.abs(png_grid(manifold).astype(int) - want).max() <= 1  # float32 rounding at .5 steps
    transposed = grids.grid(grids.to_uint8(decode(z[:, ::-1]), unit_range=True), pictures.MANIFOLD_SIDE)[..., 0]
    assert np.abs(png_grid(manifold).astype(int) - transposed).max() > 8  # control: the axes swapped

    test, _ = data.load_arrays("quickstart_digits", "test", "embedded")
    x = test[:pictures.RECONSTRUCTIONS].astype(np.float32) / 255.0
    mean = V.apply({"params": params}, x, method=V.encode)[0]
    pairs = np.stack([grids.to_uint8(x, True), grids.to_uint8(decode(mean), True)], axis=1).reshape(-1, 28, 28, 1)
    reconstructions = pictures.write_reconstructions(exp, state, str(tmp_path))
    assert np.abs(png_grid(reconstructions).astype(int) - grids.grid(pairs, 16)[..., 0]).max() <= 1
    swapped = grids.grid(pairs.reshape(-1, 2, 28, 28, 1)[:, ::-1].reshape(pairs.shape), 16)[..., 0]
    assert np.abs(png_grid(reconstructions).astype(int) - swapped).max() > 8  # control: reconstruction | test

    interpolations = pictures.write_interpolations(exp, state, str(tmp_path))
    rows = png_grid(interpolations).shape[0]
    assert rows == pictures.INTERPOLATION_ROWS * 30 + 2  # 28 pixels and a 2-pixel gap a row


def test_pictures_that_do_not_apply_are_left_out(tmp_path):
    gan = load_experiment("quickstart:smoke")
    exp = Experiment(gan, load_train_data=False)
    assert exp.builder.encode_fn() is None
    assert pictures.write_reconstructions(exp, None, str(tmp_path)) is None  # a GAN has no encoder
    assert pictures.write_manifold(exp, None, str(tmp_path)) is None  # its latent space is not 2-D
    ring = load_experiment("gan_mixture:ring,smoke")
    ring.data.batch_size = 64  # divisible by the 8 fake devices
    mixture = Experiment(ring, load_train_data=False)
    assert pictures.write_interpolations(mixture, None, str(tmp_path)) is None  # points, not images
    assert report.write_class_histogram(str(tmp_path), []) is None  # no evaluation
    assert not (tmp_path / report.PICTURES_DIR).exists()


def test_class_histogram_of_the_newest_evaluation_and_the_report_shows_the_pictures(tmp_path, capsys):
    write_workdir_config(str(tmp_path), load_experiment("quickstart:smoke"))
    for step, counts in ((100, [9, 1]), (200, [3, 7])):
        (tmp_path / f"eval_step_{step:07d}.json").write_text(json.dumps(
            {"step": step, "classifier_space": {"fid": 1.0, "class_histogram": counts}}))
    results = report.evaluations(str(tmp_path), [])
    assert report.newest_class_histograms(results) == (200, {"classifier_space": [3, 7]})
    assert pictures.write_pictures(str(tmp_path)) == []
    assert "pictures: none from the networks" in capsys.readouterr().err  # no checkpoint: said, not an error
    page = open(report.write_report(str(tmp_path))).read()
    assert (tmp_path / "pictures" / "class_histogram.png").is_file()
    caption = report.PICTURES["class_histogram.png"]
    assert re.search(rf'<figure><img alt="class_histogram.png" src="data:image/png;base64,[^"]+"><figcaption>'
                     rf"{re.escape(caption)}</figcaption></figure>", page)
    assert page.count("<figure>") == 1  # the pictures that are absent are not shown


def test_a_vaegan_reconstructs_through_its_encoder_and_generator(tmp_path):
    cfg = load_experiment("vaegan_mnist:smoke")
    cfg.data.name, cfg.data.source = "quickstart_digits", "embedded"
    exp = Experiment(cfg, load_train_data=False)
    state = exp.init_state()
    path = pictures.write_reconstructions(exp, state, str(tmp_path))
    grid = png_grid(path)
    assert grid.shape == (4 * 30 + 2, 16 * 30 + 2)  # 32 pairs, 8 a row
    test, _ = data.load_arrays("quickstart_digits", "test", "embedded")
    first = grid[2:30, 2:30]  # the first test image as the model reads it ([-1, 1], shown back as uint8)
    np.testing.assert_array_equal(first, test[0, ..., 0])
    assert not np.array_equal(grid[2:30, 32:60], first)  # beside it the untrained generator's decoding
