"""The notebook API (gan_jax/api.py): the same runs, samples and evaluations as launch.py."""

import json
import re
import shutil

import jax
import numpy as np
import pytest
from conftest import load_experiment, once_per_process

import gan_jax
from gan_jax.errors import UserError
from gan_jax.experiment import SAMPLE_BATCH, load_workdir_config
from gan_jax.sample import sample as sample_to_file
from gan_jax.sampling import CHUNK, samples_key


def test_load_config_is_launch_s_config():
    assert gan_jax.load_config("experiments/gan_mixture.py:ring,smoke") == load_experiment("gan_mixture:ring,smoke")
    assert gan_jax.load_config("gan_mixture") == load_experiment("gan_mixture")
    with pytest.raises(UserError, match=r"^config 'gan_mixture:tiny': unknown variant 'tiny'; accepted: ring, grid, "
                                         r"smoke$"):
        gan_jax.load_config("gan_mixture:tiny")
    with pytest.raises(UserError, match="no file"):
        gan_jax.load_config("experiments/nothing.py")


def test_train_load_sample_evaluate_and_metrics_of_a_ring_run(tmp_path, monkeypatch):
    from gan_jax import report

    workdir = tmp_path / "ring"
    cfg = gan_jax.load_config("experiments/gan_mixture.py:ring,smoke")
    cfg.data.batch_size = 96  # the tests' 8 devices
    refreshed_with = []  # the evaluations metrics.jsonl held at each refresh of the report's figures
    refresh = report.refresh

    def recording_refresh(folder):
        lines = (workdir / "metrics.jsonl").read_text().splitlines()
        refreshed_with.append([r["step"] for r in map(json.loads, lines) if r.get("event") == "eval"])
        return refresh(folder)

    monkeypatch.setattr(report, "refresh", recording_refresh)
    last = gan_jax.train(cfg, workdir)
    assert np.isfinite(last["d_loss"])
    assert refreshed_with[-1] == [2, 4]  # the last curves include the last step's evaluation
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
    # The training loop refreshes the report's figures (with a grid, at most every 30 s, and at the end).
    assert (tmp_path / "q" / "curves.png").is_file() and (tmp_path / "q" / "samples" / "progress.gif").is_file()
    run = gan_jax.load_run(tmp_path / "q")
    images = run.sample(5, seed=3)
    assert images.shape == (5, 28, 28, 1) and images.dtype == np.uint8 and images.max() > images.min()
    # Streamed in chunks (uint8, at most CHUNK each), the same images to the bit.
    chunks = list(run.sample_chunks(CHUNK + 3, seed=3))
    assert [(len(c), c.dtype) for c in chunks] == [(CHUNK, np.uint8), (3, np.uint8)]
    np.testing.assert_array_equal(np.concatenate(chunks), run.sample(CHUNK + 3, seed=3))
    np.testing.assert_array_equal(chunks[0][:5], images)


@pytest.fixture(scope="module")
@once_per_process
def ring_run(tmp_path_factory):
    """A gan_mixture:ring smoke run trained in this process (checkpoints 2 and 4), once per module."""
    workdir = tmp_path_factory.mktemp("api") / "ring"
    cfg = gan_jax.load_config("experiments/gan_mixture.py:ring,smoke")
    cfg.data.batch_size = 96  # the tests' 8 devices
    gan_jax.train(cfg, workdir)
    return workdir


def test_sample_chunks_concatenate_to_sample_bit_for_bit(ring_run):
    run = gan_jax.load_run(ring_run)
    n = 2 * CHUNK + 7
    chunks = list(run.sample_chunks(n, seed=5))
    assert [len(c) for c in chunks] == [CHUNK, CHUNK, 7] and all(c.dtype == np.float32 for c in chunks)
    np.testing.assert_array_equal(np.concatenate(chunks), run.sample(n, seed=5))
    np.testing.assert_array_equal(next(run.sample_chunks(3)), run.sample(3))  # the run's own seed


def test_sampling_more_than_memory_is_refused_before_drawing(ring_run, monkeypatch):
    import gan_jax.sampling

    run = gan_jax.load_run(ring_run)
    drawn = gan_jax.sampling.sample_chunks

    def not_drawn(*args):
        raise AssertionError("samples were drawn before the count was checked")

    monkeypatch.setattr(gan_jax.sampling, "sample_chunks", not_drawn)
    call = f"load_run({str(ring_run)!r}).sample"
    with pytest.raises(UserError, match=rf"^{re.escape(call)}\(n=1000000000000\) needs 8,000\.\d\d GB of memory "
                       r"\(8 bytes per sample and 0\.\d\d GB for sampling\) but [\d,]+\.\d\d GB are available; "
                       r"accepted: n <= \d+; sample_chunks\(n\) streams any n, a chunk at a time$"):
        run.sample(10**12)  # 8 TB of float32 points
    with pytest.raises(UserError, match=r"\.sample\(n=0\): n is not accepted; accepted: a positive count$"):
        run.sample(0)
    # The largest accepted count is accepted, one more is not (memory as a test sets it).
    sampling = gan_jax.sampling
    margin = sampling.MEMORY_MARGIN_CHUNKS * sampling.CHUNK * 2 * 4 + sampling.MEMORY_MARGIN_BYTES
    monkeypatch.setattr(gan_jax.memory, "host_available_bytes", lambda: margin + 100 * 8 + 7)
    with pytest.raises(UserError, match=r"\(n=101\) needs .* accepted: n <= 100;"):
        run.sample(101)
    monkeypatch.setattr(gan_jax.sampling, "sample_chunks", drawn)
    assert run.sample(100).shape == (100, 2)


def test_errors_through_the_api_name_the_call_and_through_launch_the_flags(ring_run, tmp_path):
    from gan_jax.sampling import restore

    d, q = str(ring_run), lambda path: re.escape(repr(str(path)))
    with pytest.raises(UserError, match=rf"^load_run\({q(d)}, step=3\): step=3 has no checkpoint in {re.escape(d)}; "
                                        r"accepted: 2, 4$"):
        gan_jax.load_run(d, step=3)
    with pytest.raises(UserError, match=rf"^--step=3 has no checkpoint in {re.escape(d)}; accepted: 2, 4$"):
        restore(d, 3)
    empty = tmp_path / "empty"  # a run whose checkpoints were deleted
    empty.mkdir()
    (empty / "config.json").write_bytes((ring_run / "config.json").read_bytes())
    with pytest.raises(UserError, match=rf"^load_run\({q(empty)}\): {q(empty)} has no checkpoint; train there first$"):
        gan_jax.load_run(empty)
    with pytest.raises(UserError, match=rf"^--workdir={q(empty)} has no checkpoint; train there first$"):
        restore(str(empty), None)
    nothing = tmp_path / "nothing"
    with pytest.raises(UserError, match=rf"^load_run\({q(nothing)}\): {q(nothing)} holds no run \(no config.json\)"):
        gan_jax.load_run(nothing)
    with pytest.raises(UserError, match=rf"^--workdir={q(nothing)} holds no run \(no config.json\)"):
        restore(str(nothing), None)


# --- truncated latents (gan_jax/latents.py) ------------------------------------------------------
def test_a_run_samples_truncated_latents_and_records_them(ring_run, tmp_path):
    workdir = shutil.copytree(ring_run, tmp_path / "ring")
    run = gan_jax.load_run(workdir)
    n, t = SAMPLE_BATCH, 0.5
    np.testing.assert_array_equal(run.sample(n, seed=5, truncation=0.0), run.sample(n, seed=5))
    # The first chunk's latents (fold_in(samples key, 0)), clipped, through the generator.
    drawn = n if jax.config.jax_threefry_partitionable else 10_000
    z = np.asarray(jax.random.normal(jax.random.fold_in(samples_key(5, run.step), 0),
                                     (drawn, run.config.model.latent_dim)))
    expected = run.experiment.generate(run.state, np.clip(z, -t, t))[:n]
    np.testing.assert_array_equal(run.sample(n, seed=5, truncation=t, truncation_method="clip"), expected)
    resampled = run.sample(n, seed=5, truncation=t)
    assert not np.array_equal(resampled, run.sample(n, seed=5)) and not np.array_equal(resampled, expected)
    # --mode=sample with eval.truncation (--truncation): the same samples, and how they were drawn.
    cfg = load_workdir_config(str(workdir))
    cfg.eval.truncation = t
    sample_to_file(str(workdir), n, None, cfg)
    with np.load(workdir / "samples.npz") as f:
        assert list(f.keys()) == ["points", "truncation", "truncation_method"]
        np.testing.assert_array_equal(f["points"], run.sample(n, truncation=t))
        assert f["truncation"].tolist() == [t] and f["truncation_method"].tolist() == ["resample"]
    assert run.evaluate(metrics="modes", truncation=t)["truncation"] == {"threshold": t, "method": "resample"}
    assert "truncation" not in run.evaluate(metrics="modes")
    from gan_jax.evaluate.run import evaluate

    evaluate(str(workdir), None, cfg)
    record = json.loads((workdir / f"eval_step_{run.step:07d}.json").read_text())
    assert record["truncation"] == {"threshold": t, "method": "resample"}


@pytest.mark.parametrize("kwargs,accepted", [
    ({"truncation": -1.0}, r"truncation=-1\.0 is not accepted; accepted: a finite number >= 0 \(0: none\)$"),
    ({"truncation": float("nan")}, r"truncation=nan is not accepted; accepted: a finite number >= 0"),
    ({"truncation": 0.5, "truncation_method": "cut"},
     r"truncation_method='cut' is not accepted; accepted: resample, clip$"),
])
def test_bad_truncations_are_refused_naming_the_call(ring_run, kwargs, accepted):
    run = gan_jax.load_run(ring_run)
    with pytest.raises(UserError, match=rf"^load_run\(.*\)\.sample: {accepted}"):
        run.sample(3, **kwargs)
