"""Mode-collapse metrics (the PacGAN protocol, Lin et al. 2018), as pure NumPy functions.

2D Gaussian mixtures (ring8, grid25 in gan_jax/data/synthetic.py): a generated point is *high quality*
if its Euclidean distance to its nearest mode centre is <= 3 standard deviations of the mixture; a
mode is *captured* if at least one high-quality point is nearest to it; the *reverse KL* is
KL(p || uniform) = sum_i p_i log(p_i m), with p the histogram over the m modes of the high-quality
points (0 log 0 = 0), in nats: 0 for a perfectly balanced generator, log m when every high-quality
point sits on one mode.

Stacked MNIST: each of the three channels is classified into a digit; the triple is one of 1000
modes, and the same counts and KL to the uniform distribution over the 1000 modes are reported.

Convention when there is nothing to histogram (no high-quality point, or no point at all): 0 modes
captured, high-quality fraction 0.0 and reverse KL = inf (no distribution is further from uniform
than none; json.dump writes it as `Infinity`)."""

import math

import numpy as np

from gan_jax.data import synthetic

_CHUNK = 65536  # points per distance computation: (chunk, m) float64 distances stay small


def kl_to_uniform(counts: np.ndarray) -> float:
    """KL(p || uniform over len(counts)) in nats for a histogram `counts` (m,) of non-negative numbers,
    with p = counts / sum(counts) and 0 log 0 = 0; inf if the counts sum to 0."""
    counts = np.asarray(counts, np.float64)
    total = counts.sum()
    if total <= 0:
        return math.inf
    p = counts[counts > 0] / total
    return float(max(0.0, np.sum(p * np.log(p * counts.size))))  # max: rounding can give -1e-17


def nearest_modes(points: np.ndarray, means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """points (n, d), means (m, d) -> (index of the nearest mean (n,) int64, its Euclidean distance (n,)
    float64). Ties go to the lower index. Computed in float64 from differences (no |a|^2 - 2ab + |b|^2
    cancellation), in chunks of 65,536 points."""
    points = np.asarray(points, np.float64)
    means = np.asarray(means, np.float64)
    index = np.empty(len(points), np.int64)
    distance = np.empty(len(points), np.float64)
    for i in range(0, len(points), _CHUNK):
        d = np.sqrt(np.sum((points[i:i + _CHUNK, None, :] - means[None]) ** 2, axis=-1))  # (chunk, m)
        index[i:i + _CHUNK] = np.argmin(d, axis=1)
        distance[i:i + _CHUNK] = np.take_along_axis(d, index[i:i + _CHUNK, None], axis=1)[:, 0]
    return index, distance


def mode_metrics(points: np.ndarray, means: np.ndarray, std: float, num_std: float = 3.0) -> dict:
    """PacGAN mode metrics of generated `points` (n, 2) against mode centres `means` (m, 2) of a mixture
    with isotropic standard deviation `std` (same units as the points).

    Returns a JSON-ready dict:
      modes_captured         int in [0, m]: modes nearest to at least one high-quality point
      high_quality_fraction  float in [0, 1]: fraction of points within num_std * std of their nearest mode
      reverse_kl             float >= 0, nats: KL(high-quality mode histogram || uniform over m); inf if none
      num_modes              m
    """
    points = np.asarray(points, np.float64)
    means = np.asarray(means, np.float64)
    if points.ndim != 2 or means.ndim != 2 or points.shape[1] != means.shape[1]:
        raise ValueError(f"points (n, d) and means (m, d) must agree in d; got {points.shape} and {means.shape}")
    if not std > 0:
        raise ValueError(f"std must be > 0, got {std}")
    m = len(means)
    index, distance = nearest_modes(points, means)
    good = distance <= num_std * std
    counts = np.bincount(index[good], minlength=m)
    return {"modes_captured": int(np.count_nonzero(counts)),
            "high_quality_fraction": float(good.mean()) if len(points) else 0.0,
            "reverse_kl": kl_to_uniform(counts),
            "num_modes": int(m)}


def mixture_modes(name: str) -> tuple[np.ndarray, float]:
    """The mode centres (m, 2) float32 and the std of the mixture registered as `name` in
    gan_jax.data.synthetic.MIXTURES (e.g. 'ring8', 'grid25')."""
    if name not in synthetic.MIXTURES:
        raise ValueError(f"unknown mixture {name!r}; known: {', '.join(sorted(synthetic.MIXTURES))}")
    means_fn, std = synthetic.MIXTURES[name]
    return np.asarray(means_fn()), float(std)


def mixture_mode_metrics(points: np.ndarray, name: str) -> dict:
    """`mode_metrics` of `points` (n, 2) against the registered mixture `name` (e.g. samples.npz's
    `points` from a run with data.name='ring8')."""
    means, std = mixture_modes(name)
    return mode_metrics(points, means, std)


def stacked_modes(labels: np.ndarray, num_classes: int = 10) -> tuple[int, float]:
    """Stacked MNIST modes from already-classified channel labels (n, 3) int in [0, num_classes):
    the mode of a sample is labels[:, 0] * 100 + labels[:, 1] * 10 + labels[:, 2] (one of 1000).

    Returns (modes captured: how many of the 1000 modes hold at least one sample,
             KL(mode histogram || uniform over the 1000 modes) in nats; inf for n = 0)."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[1] != 3:
        raise ValueError(f"labels must be (n, 3), got {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")
    labels = labels.astype(np.int64)
    mode = (labels[:, 0] * num_classes + labels[:, 1]) * num_classes + labels[:, 2]
    counts = np.bincount(mode, minlength=num_classes ** 3)
    return int(np.count_nonzero(counts)), kl_to_uniform(counts)
