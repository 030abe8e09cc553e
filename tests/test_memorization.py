"""The memorization check (gan_jax/evaluate/memorization.py and the 'memorization' evaluator): nearest
neighbours on the device against a brute-force float64 numpy search; a "generator" that returns training
images is flagged, one that returns the test images is not, with the numbers of a numpy reference."""

import json

import numpy as np
import pytest
from conftest import load_experiment, once_per_process

from gan_jax import data
from gan_jax.evaluate import classify, evaluators, memorization
from gan_jax.evaluate.metrics import nearest_neighbours
from gan_jax.experiment import Experiment


def brute_force(queries: np.ndarray, reference: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(distances, indices) of the k nearest reference rows: every distance in float64 on the host, then
    the smallest (k = 1) or a full sort."""
    q, r = np.asarray(queries, np.float64), np.asarray(reference, np.float64)
    d = np.sqrt(np.maximum((q * q).sum(1)[:, None] + (r * r).sum(1)[None, :] - 2 * q @ r.T, 0))
    order = np.argmin(d, axis=1)[:, None] if k == 1 else np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, 1), order


@pytest.mark.parametrize("k, block_size", [(1, None), (1, 7), (3, None), (3, 16)])
def test_nearest_neighbours_match_a_brute_force_search(k, block_size):
    rng = np.random.default_rng(k)
    queries, reference = rng.normal(size=(45, 6)), rng.normal(size=(120, 6))
    distances, indices = nearest_neighbours(queries, reference, k, block_size)
    want_d, want_i = brute_force(queries, reference, k)
    assert distances.shape == indices.shape == (45, k)
    np.testing.assert_array_equal(indices, want_i)
    np.testing.assert_allclose(distances, want_d, rtol=1e-5, atol=1e-5)
    # control: the same search against a shuffled reference finds other rows
    shuffled = rng.permutation(len(reference))
    assert not np.array_equal(nearest_neighbours(queries, reference[shuffled], k, block_size)[1], want_i)


def test_nearest_neighbours_bad_inputs_one_line():
    x = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"^k=0; expected an integer >= 1$"):
        nearest_neighbours(x, x, 0)
    with pytest.raises(ValueError, match=r"^queries have shape \(4, 3\) and reference \(4, 2\); expected the same"):
        nearest_neighbours(x, np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"^reference has shape \(2, 3\): 2 samples; at least 3 are needed$"):
        nearest_neighbours(x, x[:2], 3)


def test_copies_are_flagged_and_held_out_points_are_not():
    rng = np.random.default_rng(0)
    train, test, fresh = rng.normal(size=(3000, 8)), rng.normal(size=(20000, 8)), rng.normal(size=(5000, 8))
    copies = train[rng.choice(len(train), 500, replace=False)] + 1e-4 * rng.normal(size=(500, 8))
    copied = memorization.space_summary(memorization.distances(copies, train, test))
    new = memorization.space_summary(memorization.distances(fresh, train, test))
    assert copied["memorized_fraction"] == 1.0 and copied["median_distance_ratio"] < 1e-3
    # fresh points of the data's distribution: about the percentile (over seeds 0.008 to 0.014: the binomial
    # spread of 5,000 points and the threshold's own of 20,000, steep where the distances are small)
    assert abs(new["memorized_fraction"] - 0.01) < 0.006 and abs(new["median_distance_ratio"] - 1) < 0.02
    sample_d = brute_force(fresh, train, 1)[0][:, 0]
    threshold = np.percentile(brute_force(test, train, 1)[0][:, 0], 1.0)
    assert new["threshold"] == pytest.approx(threshold, rel=1e-5)
    assert new["memorized_fraction"] == np.mean(sample_d < threshold)
    assert [row[0] for row in new["grid"]] == list(np.argsort(sample_d, kind="stable")[:memorization.GRID_ROWS])


@pytest.fixture(scope="module")
@once_per_process
def quickstart():
    """A quickstart run's experiment (no state needed: its sampler is replaced) and its images."""
    cfg = load_experiment("quickstart:smoke")
    cfg.eval.num_samples = 500
    exp = Experiment(cfg, load_train_data=False)
    train, _ = data.load_arrays("quickstart_digits", "train", "embedded")
    test, _ = data.load_arrays("quickstart_digits", "test", "embedded")
    return exp, train, test


def generating(exp, images_u8: np.ndarray):
    """`exp` with a sampler that returns `images_u8` in model range, in order."""
    exp.sample = lambda state, num, key=None, labels=None, truncation=None: (
        images_u8[:num].astype(np.float32) / 127.5 - 1.0)
    return exp


def test_a_generator_of_training_images_is_flagged(quickstart, tmp_path):
    exp, train, _ = quickstart
    picked = np.random.default_rng(1).choice(len(train), 500, replace=False)
    record = evaluators.run_all(generating(exp, train[picked]), None, 0, ["memorization"], str(tmp_path))
    record = json.loads(json.dumps(record))["memorization"]  # JSON as eval_step_*.json holds it
    assert record["samples"] == 500 and record["train_images"] == 4500 and record["test_images"] == 500
    assert record["classifier"] == "mnist" and record["percentile"] == memorization.PERCENTILE
    for space in ("features", "pixels"):
        assert record[f"{space}_memorized_fraction"] == 1.0, space
        assert record[f"{space}_median_distance_ratio"] < 0.01, space
        for sample, nearest, *_ in record[f"{space}_grid"]:  # each copy's nearest training image is itself
            assert train[nearest].tobytes() == train[picked[sample]].tobytes(), space
    names = {p.name for p in (tmp_path / "pictures").iterdir()}
    assert names == {"memorization_neighbours_features.png", "memorization_neighbours_pixels.png",
                     "memorization_distances.png"}


def test_a_generator_of_test_images_is_not_flagged(quickstart):
    exp, train, test = quickstart
    record = evaluators.run_all(generating(exp, test), None, 0, ["memorization"])["memorization"]
    fnet = classify.load_classifier("mnist")
    spaces = {"pixels": (memorization.pixels(test), memorization.pixels(train)),
              "features": (classify.embed(fnet, test)[0], classify.embed(fnet, train)[0])}
    for space, (test_x, train_x) in spaces.items():
        # the samples are the test images themselves: 5 of 500 lie below the 1st percentile of their distances
        assert abs(record[f"{space}_memorized_fraction"] - 0.01) <= 0.004, space
        assert record[f"{space}_median_distance_ratio"] == pytest.approx(1.0, abs=1e-3), space
        nearest = brute_force(test_x, train_x, 1)[0][:, 0]
        assert record[f"{space}_threshold"] == pytest.approx(np.percentile(nearest, 1.0), rel=1e-4), space
        assert record[f"{space}_test_median_distance"] == pytest.approx(np.median(nearest), rel=1e-4), space
