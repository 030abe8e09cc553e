"""Sample-quality metrics over feature arrays: FID, KID, improved precision/recall and the Inception Score.

Features are (n, d) arrays (numpy or jax) from any embedding network; the metrics are unitless numbers
in the embedding's units (FID: squared feature units; KID: kernel units). Every bad input raises a
one-line ValueError naming the argument, its shape or value, and what is accepted.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["FeatureStats", "density_coverage", "frechet_distance", "kernel_distance", "mean_cov",
           "nearest_neighbours", "precision_recall", "inception_score"]


def _features(x, name: str, min_rows: int = 2, dtype=np.float64) -> np.ndarray:
    """`x` as a finite 2-D host array with at least `min_rows` rows."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} has shape {arr.shape}; expected a 2-D (n, d) array of features")
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name} has shape {arr.shape}: {arr.shape[0]} samples; at least {min_rows} are needed")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ValueError(f"{name} has dtype {arr.dtype}; expected real numbers")
    arr = arr.astype(dtype, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} (shape {arr.shape}) has {int((~np.isfinite(arr)).sum())} NaN/inf entries; "
                         "expected finite features")
    return arr


class FeatureStats:
    """Running mean and covariance of (n, d) feature batches, accumulated on the device.

    Sums are kept in float64 when `jax_enable_x64` is on, else in Kahan-compensated float32. Batches
    are shifted by the first batch's mean before summing: with a large mean offset (say 100 against
    a std of 1) E[xx^T] - mu mu^T would cancel away every float32 digit of the covariance.
    """

    def __init__(self) -> None:
        self.n = 0  # samples seen
        self.dim: int | None = None
        self._shift = None  # (d,) first batch's mean
        self._acc = None  # (sum, sum compensation, outer sum, outer compensation)

    def update(self, batch) -> FeatureStats:
        """Adds a (b, d) batch of features (numpy or jax, b >= 1); returns self."""
        shape = tuple(np.shape(batch))
        if len(shape) != 2 or shape[0] < 1 or (self.dim is not None and shape[1] != self.dim):
            want = f"(b, {self.dim})" if self.dim is not None else "(b, d)"
            raise ValueError(f"batch has shape {shape}; expected a 2-D {want} array with b >= 1")
        dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
        x = jnp.asarray(batch, dtype=dtype)
        if self._acc is None:
            zeros = jnp.zeros((shape[1],), dtype)
            self._shift = jnp.mean(x, axis=0)
            self._acc = (zeros, zeros, jnp.zeros((shape[1],) * 2, dtype), jnp.zeros((shape[1],) * 2, dtype))
        acc, finite = _accumulate(self._acc, x, self._shift)
        # Checked before committing so that a bad batch leaves the statistics untouched.
        if not bool(finite):
            raise ValueError(f"batch (shape {shape}) has NaN/inf entries; expected finite features")
        self._acc, self.dim, self.n = acc, shape[1], self.n + shape[0]
        return self

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean (d,), unbiased covariance (d, d)) as float64 numpy arrays; needs n >= 2."""
        if self.n < 2:
            raise ValueError(f"FeatureStats has {self.n} samples; at least 2 are needed for a covariance")
        s, s_c, o, o_c = (np.asarray(a, np.float64) for a in self._acc)
        # Kahan's compensation holds the negated lost low-order part.
        mean_y = (s - s_c) / self.n
        cov = ((o - o_c) - self.n * np.outer(mean_y, mean_y)) / (self.n - 1)
        return np.asarray(self._shift, np.float64) + mean_y, (cov + cov.T) / 2


def _kahan(total, comp, value):
    y = value - comp
    t = total + y
    return t, (t - total) - y


@jax.jit
def _accumulate(acc, x, shift):
    s, s_c, o, o_c = acc
    y = x - shift
    s, s_c = _kahan(s, s_c, jnp.sum(y, axis=0))
    o, o_c = _kahan(o, o_c, jnp.matmul(y.T, y, precision=jax.lax.Precision.HIGHEST))
    return (s, s_c, o, o_c), jnp.all(jnp.isfinite(x))


def _mean_cov(x, name: str, allow_singular: bool) -> tuple[np.ndarray, np.ndarray]:
    """(mean, cov) in float64 from features, a FeatureStats or a (mean, cov) pair."""
    if isinstance(x, FeatureStats):
        n, d = x.n, x.dim
        if n < 2:
            raise ValueError(f"{name} is a FeatureStats with {n} samples; at least 2 are needed for a covariance")
        mu, sigma = x.mean_cov()
    elif isinstance(x, tuple | list) and len(x) == 2:
        mu, sigma = (np.asarray(a, np.float64) for a in x)
        if mu.ndim != 1 or sigma.shape != (mu.shape[0],) * 2:
            raise ValueError(f"{name} is a (mean, cov) pair of shapes {mu.shape}, {sigma.shape}; expected (d,), (d, d)")
        if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
            raise ValueError(f"{name} is a (mean, cov) pair with NaN/inf entries; expected finite statistics")
        return mu, sigma
    else:
        mu, sigma = mean_cov(x, name)  # checks the shape first
        n, d = np.shape(x)
    if n <= d and not allow_singular:
        raise ValueError(f"{name} has {n} samples of dimension {d}: n <= d gives a singular covariance; "
                         "pass more than d samples, or allow_singular=True")
    return mu, sigma


def mean_cov(features, name: str = "features") -> tuple[np.ndarray, np.ndarray]:
    """(mean (d,), unbiased covariance (d, d)), float64, of (n, d) features (n >= 2): what
    frechet_distance fits to a feature array, so that a saved pair gives it the same numbers."""
    feats = _features(features, name)
    return feats.mean(axis=0), np.cov(feats, rowvar=False).reshape(feats.shape[1], -1)


def frechet_distance(a, b, *, eps: float = 1e-6, allow_singular: bool = False) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID on Inception features).

    a, b: each an (n, d) array of features, a FeatureStats, or a (mean (d,), cov (d, d)) pair.
    Returns ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) in squared feature units, float64.
    eps: added to both covariances' diagonals when sqrtm of their product is not finite (as pytorch-fid).
    """
    from scipy import linalg  # scipy is only needed here, not to import the package

    mu1, s1 = _mean_cov(a, "a", allow_singular)
    mu2, s2 = _mean_cov(b, "b", allow_singular)
    if mu1.shape != mu2.shape:
        raise ValueError(f"a has dimension {mu1.shape[0]} and b {mu2.shape[0]}; expected the same feature dimension")
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        # Round-off gives a small imaginary part; a large one means the product is far from PSD.
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"sqrtm(cov_a @ cov_b) has an imaginary part up to {np.abs(covmean.imag).max():.3g}; "
                             "expected positive semi-definite covariances")
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, both sets of m rows."""
    m, d = x.shape
    kxx, kyy, kxy = ((p @ q.T / d + 1) ** 3 for p, q in ((x, x), (y, y), (x, y)))
    off = lambda k: k.sum() - np.trace(k)
    return float((off(kxx) + off(kyy)) / (m * (m - 1)) - 2 * kxy.sum() / (m * m))


def kernel_distance(a, b, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018), as TF-GAN and torch-fidelity compute it.

    a: (n_a, d), b: (n_b, d) features. Draws `num_subsets` subsets of min(subset_size, n_a, n_b) rows
    of each set without replacement and returns (mean, std) over subsets of the unbiased MMD^2 with the
    cubic polynomial kernel (x.y / d + 1)^3; std is the spread over subsets, not a standard error.
    """
    # Kept in the input dtype on the host; only one subset at a time is widened to float64.
    a, b = _features(a, "a", dtype=np.result_type(np.asarray(a).dtype, np.float32)), _features(
        b, "b", dtype=np.result_type(np.asarray(b).dtype, np.float32))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a has shape {a.shape} and b {b.shape}; expected the same feature dimension")
    if num_subsets < 1 or subset_size < 2:
        raise ValueError(f"num_subsets={num_subsets}, subset_size={subset_size}; expected >= 1 and >= 2")
    m = min(subset_size, a.shape[0], b.shape[0])
    rng = np.random.default_rng(seed)
    mmds = np.array([_mmd2_unbiased(a[rng.choice(a.shape[0], m, replace=False)].astype(np.float64),
                                    b[rng.choice(b.shape[0], m, replace=False)].astype(np.float64))
                     for _ in range(num_subsets)])
    return float(mmds.mean()), float(mmds.std())


def _sq_dists(rows, cols):
    d2 = (jnp.sum(rows**2, 1)[:, None] + jnp.sum(cols**2, 1)[None, :]
          - 2 * jnp.matmul(rows, cols.T, precision=jax.lax.Precision.HIGHEST))
    return jnp.maximum(d2, 0)


def _kth_radius(rows, manifold, k: int, backend: str | None = None):
    """Squared distance from each row to its k-th neighbour in `manifold`: a row's index k in sorted
    order, the point itself counting as index 0."""
    d2 = _sq_dists_jit(rows, manifold)
    if (backend or jax.default_backend()) == "cpu":
        # XLA:CPU's top_k sorts whole rows; numpy's partition selects in linear time
        # (benchmarks/bench.py eval_fid_mnist). The same numbers as the device path (tests/test_metrics.py).
        return jnp.asarray(np.partition(np.asarray(d2), k, axis=1)[:, k])
    return _kth_smallest(d2, k)


_sq_dists_jit = jax.jit(_sq_dists)


@functools.partial(jax.jit, static_argnums=1)
def _kth_smallest(d2, k: int):
    return -jax.lax.top_k(-d2, k + 1)[0][:, k]


@jax.jit
def _inside(rows, manifold, radii):
    return jnp.any(_sq_dists(rows, manifold) <= radii[None, :], axis=1)


def _blocks(x, block: int):
    """Row blocks of `x`, the last padded to full size so that one compiled shape serves them all."""
    for i in range(0, x.shape[0], block):
        rows = x[i:i + block]
        yield rows.shape[0], jnp.pad(rows, ((0, block - rows.shape[0]), (0, 0)))


def _coverage(manifold, probes, k: int, block: int) -> float:
    """Fraction of `probes` within the k-NN radius of at least one `manifold` point."""
    radii = jnp.concatenate([_kth_radius(rows, manifold, k)[:n] for n, rows in _blocks(manifold, block)])
    # Padding rows are dropped before counting: a zero row could fall inside a ball.
    inside = sum(int(np.sum(np.asarray(_inside(rows, manifold, radii))[:n])) for n, rows in _blocks(probes, block))
    return inside / probes.shape[0]


def precision_recall(real, fake, k: int = 3, block_size: int | None = None) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) of `fake` (n_f, d) against `real` (n_r, d).

    Each point's ball has the radius of its k-th nearest neighbour in its own set (itself excluded).
    precision: fraction of fake points inside some real ball; recall: fraction of real points inside
    some fake ball. Distances are computed on the device in row blocks of `block_size` rows (default:
    about 2^24 distances a block), never the whole n_r x n_f matrix.
    """
    if not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k={k!r}; expected an integer >= 1")
    if block_size is not None and block_size < 1:
        raise ValueError(f"block_size={block_size}; expected an integer >= 1 or None")
    dtype = np.float64 if jax.config.jax_enable_x64 else np.float32
    r, f = _features(real, "real", k + 1, dtype), _features(fake, "fake", k + 1, dtype)
    if r.shape[1] != f.shape[1]:
        raise ValueError(f"real has shape {r.shape} and fake {f.shape}; expected the same feature dimension")
    r, f = jnp.asarray(r), jnp.asarray(f)
    n_max = max(r.shape[0], f.shape[0])
    block = min(block_size or max(1, 2**24 // n_max), n_max)
    return _coverage(r, f, k, block), _coverage(f, r, k, block)


@jax.jit
def _balls_holding(rows, manifold, radii):
    """For each row: the number of `manifold` balls (squared radii `radii`) that strictly hold it."""
    return jnp.sum(_sq_dists(rows, manifold) < radii[None, :], axis=1)


@jax.jit
def _nearest(rows, manifold):
    """For each row: its squared distance to the nearest `manifold` point."""
    return jnp.min(_sq_dists(rows, manifold), axis=1)


@functools.partial(jax.jit, static_argnums=2)
def _k_nearest(rows, manifold, k: int):
    """Each row's k smallest squared distances to `manifold` points, ascending, and those points' indices."""
    d2 = _sq_dists(rows, manifold)
    if k == 1:  # a reduction: XLA:CPU's top_k would sort whole rows
        return jnp.min(d2, axis=1, keepdims=True), jnp.argmin(d2, axis=1)[:, None]
    negated, indices = jax.lax.top_k(-d2, k)
    return -negated, indices


def nearest_neighbours(queries, reference, k: int = 1, block_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest `reference` (n_r, d) rows of each `queries` (n_q, d) row by Euclidean distance:
    (distances (n_q, k) float64, ascending, in the features' units; indices (n_q, k) int64 into reference).
    Computed on the device in query blocks of `block_size` rows (default: about 2^24 distances a block);
    k = 1 is a reduction, k > 1 a top-k that XLA:CPU computes by sorting whole rows (meant for few queries)."""
    if not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k={k!r}; expected an integer >= 1")
    if block_size is not None and block_size < 1:
        raise ValueError(f"block_size={block_size}; expected an integer >= 1 or None")
    dtype = np.float64 if jax.config.jax_enable_x64 else np.float32
    q, r = _features(queries, "queries", 1, dtype), _features(reference, "reference", k, dtype)
    if q.shape[1] != r.shape[1]:
        raise ValueError(f"queries have shape {q.shape} and reference {r.shape}; expected the same feature dimension")
    q, r = jnp.asarray(q), jnp.asarray(r)
    block = min(block_size or max(1, 2**24 // r.shape[0]), q.shape[0])
    d2, indices = [], []
    for n, rows in _blocks(q, block):  # padding rows are dropped
        d, i = _k_nearest(rows, r, int(k))
        d2.append(np.asarray(d)[:n])
        indices.append(np.asarray(i)[:n])
    return np.sqrt(np.concatenate(d2).astype(np.float64)), np.concatenate(indices).astype(np.int64)


def density_coverage(real, fake, k: int = 5, block_size: int | None = None) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020) of `fake` (n_f, d) against `real` (n_r, d), with the
    k-NN balls of the real points only (radius: the k-th nearest real neighbour, itself excluded).

    density = sum over fake points of the number of real balls holding it, / (k n_f): about 1 where fake
    matches real, above 1 where fakes crowd dense regions. coverage = the fraction of real balls that hold
    at least one fake point. Strict inequalities, as the authors' prdc package."""
    if not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k={k!r}; expected an integer >= 1")
    dtype = np.float64 if jax.config.jax_enable_x64 else np.float32
    r, f = _features(real, "real", k + 1, dtype), _features(fake, "fake", 1, dtype)
    if r.shape[1] != f.shape[1]:
        raise ValueError(f"real has shape {r.shape} and fake {f.shape}; expected the same feature dimension")
    r, f = jnp.asarray(r), jnp.asarray(f)
    n_max = max(r.shape[0], f.shape[0])
    block = min(block_size or max(1, 2**24 // n_max), n_max)
    radii = jnp.concatenate([_kth_radius(rows, r, k)[:n] for n, rows in _blocks(r, block)])
    # Padding rows are dropped before counting, as in _coverage.
    held = sum(int(np.sum(np.asarray(_balls_holding(rows, r, radii))[:n])) for n, rows in _blocks(f, block))
    nearest_fake = np.concatenate([np.asarray(_nearest(rows, f))[:n] for n, rows in _blocks(r, block)])
    return held / (k * f.shape[0]), float(np.mean(nearest_fake < np.asarray(radii)))


def inception_score(probs, splits: int = 10) -> tuple[float, float]:
    """Inception Score (Salimans et al. 2016): (mean, std) over `splits` contiguous splits of
    exp(E_x[KL(p(y|x) || p(y))]), p(y) being the split's mean prediction; probs is (n, classes) with
    rows that are probability vectors. Ranges from 1 to the number of classes."""
    if not isinstance(splits, int | np.integer) or splits < 1:
        raise ValueError(f"splits={splits!r}; expected an integer >= 1")
    p = _features(probs, "probs", int(splits))
    if (p < 0).any():
        raise ValueError(f"probs (shape {p.shape}) has {int((p < 0).sum())} negative entries; expected probabilities")
    sums = p.sum(axis=1)
    bad = np.abs(sums - 1) > 1e-3
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"probs (shape {p.shape}) has {int(bad.sum())} rows not summing to 1 within 1e-3 "
                         f"(e.g. row {row} sums to {sums[row]:.6g}); expected softmax outputs")
    scores = []
    for part in np.array_split(p, splits):
        py = part.mean(axis=0, keepdims=True)
        # xlogy makes 0 * log 0 = 0, so one-hot rows are fine.
        kl = (_xlogy(part, part) - _xlogy(part, py)).sum(axis=1)
        scores.append(math.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def _xlogy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x * np.log(np.where(x > 0, y, 1.0)), 0.0)
