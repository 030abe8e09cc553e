"""Is a generator copying its training set? For N generated samples, each one's nearest training image,
in the classifier's feature space and, for images of at most PIXEL_SPACE_MAX_SIDE pixels a side, in pixel
space; the distribution of those sample-to-train nearest distances against the test-to-train ones (images
the generator never saw, from the same distribution), and one number a space: the fraction of samples
closer to a training image than the PERCENTILE-th percentile of the test-to-train distances (about
PERCENTILE / 100 for a generator of new images from the data's distribution, 1 for one that copies).

    spaces = {"pixels": memorization.distances(pixels(samples), pixels(train), pixels(test))}
    record = memorization.summary(spaces)              # {'pixels_memorized_fraction': ..., ...}
    memorization.write_pictures(folder, step, spaces, samples, train)

Distances are Euclidean, in the space's units (pixels: values in [0, 1]), computed on the device in
blocks (metrics.nearest_neighbours)."""

from __future__ import annotations

import dataclasses
import hashlib
import math

import numpy as np

from gan_jax import report
from gan_jax.evaluate.metrics import nearest_neighbours

PERCENTILE = 1.0  # of the test-to-train nearest distances: the threshold under which a sample is "memorized"
NEIGHBOURS = 3  # training images shown beside each sample of the grid
GRID_ROWS = 8  # samples in the grid: those nearest to the training set
PIXEL_SPACE_MAX_SIDE = 32  # pixel-space distances for images of at most this many pixels a side
HISTOGRAM_BINS = 40


@dataclasses.dataclass(frozen=True)
class Distances:
    """One space's nearest-training-image distances."""
    sample_nearest: np.ndarray  # (N,) float64: each sample's distance to its nearest training image
    test_nearest: np.ndarray  # (M,) float64: each test image's
    rows: np.ndarray  # (R,) int: the samples nearest to the training set, nearest first
    neighbours: np.ndarray  # (R, NEIGHBOURS) int: their nearest training images, nearest first
    neighbour_distances: np.ndarray  # (R, NEIGHBOURS) float64


def pixels(images_u8: np.ndarray) -> np.ndarray:
    """uint8 images (N, H, W, C) -> (N, H * W * C) float32 in [0, 1]: the pixel space."""
    return np.asarray(images_u8, np.float32).reshape(len(images_u8), -1) / 255.0


def uses_pixel_space(example_shape: tuple[int, ...]) -> bool:
    """Whether images of `example_shape` (H, W, C) are small enough for pixel-space distances."""
    return len(example_shape) == 3 and max(example_shape[:2]) <= PIXEL_SPACE_MAX_SIDE


def distances(samples, train, test, rows: int = GRID_ROWS, k: int = NEIGHBOURS,
              block_size: int | None = None) -> Distances:
    """The nearest distances of samples (N, d) and test (M, d) to train (T, d), and the k nearest training
    images of the `rows` samples nearest to the training set. The test-to-train distances do not depend on
    the generator: computed once per process for each (train, test) pair."""
    sample_nearest = nearest_neighbours(samples, train, 1, block_size)[0][:, 0]
    shown = np.argsort(sample_nearest, kind="stable")[:rows]
    neighbour_distances, neighbours = nearest_neighbours(np.asarray(samples)[shown], train, k, block_size)
    return Distances(sample_nearest, _test_nearest(train, test, block_size), shown, neighbours, neighbour_distances)


_TEST_NEAREST: dict = {}


def _test_nearest(train, test, block_size: int | None) -> np.ndarray:
    key = tuple(hashlib.blake2b(np.ascontiguousarray(a).data).hexdigest() + str(np.shape(a)) for a in (train, test))
    if key not in _TEST_NEAREST:
        if len(_TEST_NEAREST) >= 4:
            _TEST_NEAREST.pop(next(iter(_TEST_NEAREST)))
        _TEST_NEAREST[key] = nearest_neighbours(test, train, 1, block_size)[0][:, 0]
    return _TEST_NEAREST[key]


def space_summary(d: Distances, percentile: float = PERCENTILE) -> dict:
    """threshold: the `percentile`-th percentile of the test-to-train distances (numpy's linear
    interpolation); memorized_fraction: the fraction of samples strictly closer to a training image;
    median_distance_ratio: median sample-to-train over median test-to-train distance (about 1 for new
    images of the data's distribution, 0 for copies); the grid's rows as [sample, nearest training images]."""
    threshold = float(np.percentile(d.test_nearest, percentile))
    sample_median, test_median = float(np.median(d.sample_nearest)), float(np.median(d.test_nearest))
    return {"memorized_fraction": float(np.mean(d.sample_nearest < threshold)), "threshold": threshold,
            "median_distance_ratio": sample_median / test_median if test_median > 0 else None,
            "sample_median_distance": sample_median, "test_median_distance": test_median,
            "grid": [[int(r), *map(int, n)] for r, n in zip(d.rows, d.neighbours, strict=True)]}


def summary(spaces: dict[str, Distances], percentile: float = PERCENTILE) -> dict:
    """The record of every space, its keys prefixed with the space's name ('pixels_memorized_fraction')."""
    out = {"percentile": percentile}
    for name, d in spaces.items():
        out.update({f"{name}_{k}": v for k, v in space_summary(d, percentile).items()})
    return out


def write_pictures(folder: str, step: int, spaces: dict[str, Distances], samples_u8: np.ndarray,
                   train_u8: np.ndarray, percentile: float = PERCENTILE) -> list[str]:
    """DIR/pictures/memorization_neighbours_SPACE.png per space (a row a sample: it, then its nearest
    training images, distances under them) and memorization_distances.png (the two distributions a space,
    the threshold marked); returns their paths."""
    paths = [_neighbours_grid(report.picture_path(folder, f"memorization_neighbours_{name}.png"), step, name, d,
                              samples_u8, train_u8) for name, d in spaces.items()]
    return [*paths, _histograms(report.picture_path(folder, "memorization_distances.png"), step, spaces, percentile)]


def _show(ax, image_u8: np.ndarray, title: str) -> None:
    ax.imshow(image_u8[..., 0] if image_u8.shape[-1] == 1 else image_u8, cmap="gray", vmin=0, vmax=255,
              interpolation="nearest")
    ax.set_title(title, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])


def _neighbours_grid(path: str, step: int, space: str, d: Distances, samples_u8, train_u8) -> str:
    plt = report.pyplot()
    rows, columns = len(d.rows), 1 + d.neighbours.shape[1]
    fig, axes = plt.subplots(rows, columns, figsize=(1.3 * columns, 1.35 * rows + 0.5), squeeze=False)
    for r, (sample, neighbours, dists) in enumerate(zip(d.rows, d.neighbours, d.neighbour_distances, strict=True)):
        _show(axes[r, 0], samples_u8[sample], f"sample {sample}")
        for c, (i, dist) in enumerate(zip(neighbours, dists, strict=True)):
            _show(axes[r, c + 1], train_u8[i], f"train {i}\nd={dist:.3g}")
    fig.suptitle(f"step {step}, {space}: the {rows} of {len(d.sample_nearest)} samples\nnearest to a training image",
                 fontsize=8)
    fig.tight_layout()
    return report.save_figure(fig, path)


def _histograms(path: str, step: int, spaces: dict[str, Distances], percentile: float) -> str:
    plt = report.pyplot()
    fig, axes = plt.subplots(1, len(spaces), figsize=(5 * len(spaces), 3.4), squeeze=False)
    for ax, (name, d) in zip(axes.flat, spaces.items(), strict=True):
        s = space_summary(d, percentile)
        top = max(float(d.sample_nearest.max()), float(d.test_nearest.max()))
        bins = np.linspace(0.0, top if top > 0 else 1.0, HISTOGRAM_BINS + 1)
        ax.hist(d.test_nearest, bins, density=True, alpha=0.5, color="C0",
                label=f"test to train ({len(d.test_nearest)})")
        ax.hist(d.sample_nearest, bins, density=True, alpha=0.5, color="C3",
                label=f"samples to train ({len(d.sample_nearest)})")
        ax.axvline(s["threshold"], color="k", linestyle="--", linewidth=1,
                   label=f"percentile {percentile:g} of test to train: {s['threshold']:.3g}")
        ratio = s["median_distance_ratio"]
        ax.set_title(f"{name}: memorized fraction {s['memorized_fraction']:.3g}, median ratio "
                     f"{'n/a' if ratio is None or not math.isfinite(ratio) else f'{ratio:.3g}'}", fontsize=9)
        ax.set_xlabel("distance to the nearest training image")
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
    fig.suptitle(f"step {step}", fontsize=9)
    fig.tight_layout()
    return report.save_figure(fig, path)
