"""PacGAN mode metrics (2D mixtures) and Stacked MNIST mode counts against hand-computed cases."""

import math

import numpy as np
import pytest

from gan_jax.evaluate.modes import kl_to_uniform, mixture_mode_metrics, mixture_modes, mode_metrics, stacked_modes


@pytest.mark.parametrize("name,m,std", [("ring8", 8, 0.01), ("grid25", 25, 0.05)])
def test_registered_mixtures(name, m, std):
    means, s = mixture_modes(name)
    assert means.shape == (m, 2) and s == std
    with pytest.raises(ValueError, match="unknown mixture"):
        mixture_modes("ring9")


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_points_on_every_mode_evenly(name):
    means, _ = mixture_modes(name)
    r = mixture_mode_metrics(np.tile(means, (7, 1)), name)
    assert r == {"modes_captured": len(means), "high_quality_fraction": 1.0, "reverse_kl": 0.0,
                 "num_modes": len(means)}


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_all_points_on_one_mode(name):
    means, std = mixture_modes(name)
    points = means[3] + std * np.array([[0.0, 0.0], [1.0, 0.0], [0.0, -2.0], [2.0, 2.0]])  # all within 3 std
    r = mixture_mode_metrics(points, name)
    assert r["modes_captured"] == 1 and r["high_quality_fraction"] == 1.0
    assert r["reverse_kl"] == pytest.approx(math.log(len(means)), rel=1e-12)


def test_points_far_away():
    r = mixture_mode_metrics(np.full((50, 2), 100.0), "ring8")
    assert r["modes_captured"] == 0 and r["high_quality_fraction"] == 0.0 and r["reverse_kl"] == math.inf
    r = mixture_mode_metrics(np.zeros((0, 2)), "grid25")  # no points at all: the same convention
    assert r["modes_captured"] == 0 and r["high_quality_fraction"] == 0.0 and r["reverse_kl"] == math.inf


def test_mixed_case_by_hand():
    means = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    # 3 good on mode 0, 1 good on mode 1, 1 bad near mode 2, 1 bad far from all; mode 3 empty.
    points = np.array([[0, 0], [0.5, 0], [0, -0.9], [10, 1], [0, 13.5], [5, 5]], float)
    r = mode_metrics(points, means, std=0.5)
    p = np.array([0.75, 0.25])
    assert r["modes_captured"] == 2 and r["high_quality_fraction"] == pytest.approx(4 / 6)
    assert r["reverse_kl"] == pytest.approx(float(np.sum(p * np.log(p * 4))), rel=1e-12)


def test_three_std_boundary():
    means, std = mixture_modes("ring8")
    direction = np.array([0.6, 0.8])  # unit vector: the distance to the mode is the factor below times std
    mode = means[2].astype(np.float64)
    inside = mode + 3 * std * (1 - 1e-6) * direction
    outside = mode + 3 * std * (1 + 1e-6) * direction
    assert mode_metrics(inside[None], means, std)["high_quality_fraction"] == 1.0
    assert mode_metrics(outside[None], means, std)["high_quality_fraction"] == 0.0
    # num_std is the knob: 4 std takes the outside point back
    assert mode_metrics(outside[None], means, std, num_std=4.0)["modes_captured"] == 1


def _brute_force(points, means, std):
    m = len(means)
    counts, good = [0] * m, 0
    for x, y in points:
        best, best_d = None, math.inf
        for j, (mx, my) in enumerate(means):
            d = math.hypot(x - mx, y - my)
            if d < best_d:
                best, best_d = j, d
        if best_d <= 3 * std:
            good += 1
            counts[best] += 1
    total = sum(counts)
    kl = sum(c / total * math.log(c / total * m) for c in counts if c) if total else math.inf
    return {"modes_captured": sum(c > 0 for c in counts), "high_quality_fraction": good / len(points),
            "reverse_kl": kl, "num_modes": m}


@pytest.mark.parametrize("name,spread", [("ring8", 0.03), ("grid25", 0.15), ("grid25", 0.4)])
def test_agrees_with_brute_force_loop(name, spread):
    rng = np.random.default_rng(0)
    means, std = mixture_modes(name)
    # uneven use of a subset of modes, with a noise scale that puts many points on both sides of 3 std
    used = rng.choice(len(means), size=len(means) // 2, replace=False)
    points = means[rng.choice(used, 3000, p=rng.dirichlet(np.ones(len(used))))] + spread * rng.normal(size=(3000, 2))
    fast, slow = mode_metrics(points, means, std), _brute_force(points, means, std)
    assert 0 < fast["high_quality_fraction"] < 1
    assert fast["modes_captured"] == slow["modes_captured"]
    assert fast["high_quality_fraction"] == slow["high_quality_fraction"]
    assert fast["reverse_kl"] == pytest.approx(slow["reverse_kl"], rel=1e-12, abs=1e-15)


def test_real_samples_capture_every_mode():
    import jax

    from gan_jax.data.synthetic import sample_mixture

    for name, m in (("ring8", 8), ("grid25", 25)):
        r = mixture_mode_metrics(np.asarray(sample_mixture(name, jax.random.PRNGKey(0), 20000)), name)
        assert r["modes_captured"] == m
        assert r["high_quality_fraction"] == pytest.approx(1 - math.exp(-4.5), abs=0.005)  # chi2(2) cdf at 9
        assert r["reverse_kl"] < 0.01  # multinomial noise: about (m - 1) / (2 n)


def test_kl_to_uniform():
    assert kl_to_uniform(np.array([5, 5, 5])) == 0.0
    assert kl_to_uniform(np.array([0, 7, 0, 0])) == pytest.approx(math.log(4))
    assert kl_to_uniform(np.array([1, 3])) == pytest.approx(0.25 * math.log(0.5) + 0.75 * math.log(1.5))
    assert kl_to_uniform(np.zeros(3)) == math.inf


def test_stacked_modes_closed_forms():
    every = np.stack(np.meshgrid(*[np.arange(10)] * 3, indexing="ij"), -1).reshape(-1, 3)
    assert stacked_modes(every) == (1000, 0.0)
    assert stacked_modes(np.tile(every, (3, 1))) == (1000, 0.0)
    modes, kl = stacked_modes(np.tile([[4, 0, 9]], (50, 1)))
    assert modes == 1 and kl == pytest.approx(math.log(1000))
    # k modes used evenly: KL = log(1000 / k); here the 100 modes with first digit 7
    modes, kl = stacked_modes(np.concatenate([np.full((100, 1), 7), every[:100, 1:]], 1))
    assert modes == 100 and kl == pytest.approx(math.log(10))
    # two modes with weights 3/4, 1/4
    modes, kl = stacked_modes(np.array([[1, 2, 3]] * 3 + [[3, 2, 1]]))
    assert modes == 2 and kl == pytest.approx(0.75 * math.log(750) + 0.25 * math.log(250))
    # the digit order matters: (1, 2, 3) and (3, 2, 1) are different modes, (0, 0, 0) a valid one
    assert stacked_modes(np.zeros((1, 3), int))[0] == 1
    assert stacked_modes(np.zeros((0, 3), int)) == (0, math.inf)


def test_stacked_modes_random_labels_match_counting():
    labels = np.random.default_rng(1).integers(0, 10, size=(2000, 3))
    modes, kl = stacked_modes(labels)
    triples = {tuple(row) for row in labels.tolist()}
    assert modes == len(triples)
    counts = np.array([sum(1 for row in labels.tolist() if tuple(row) == t) for t in triples])
    assert kl == pytest.approx(float(np.sum(counts / 2000 * np.log(counts / 2000 * 1000))))


def test_stacked_modes_refuses_bad_labels():
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        stacked_modes(np.zeros((5, 2), int))
    with pytest.raises(ValueError, match="in"):
        stacked_modes(np.array([[0, 10, 1]]))
