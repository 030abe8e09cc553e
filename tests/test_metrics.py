"""gan_jax.evaluate.metrics against independent references: closed forms, eigendecomposition square roots,
brute-force double loops and numpy float64 statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from gan_jax.evaluate import (
    FeatureStats,
    density_coverage,
    frechet_distance,
    inception_score,
    kernel_distance,
    precision_recall,
)


def one_line_error(fn, *words):
    """Calls fn, expecting a one-line ValueError that mentions every word."""
    with pytest.raises(ValueError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg, msg
    for word in words:
        assert word in msg, (word, msg)
    return msg


def psd_sqrt(s):
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def fid_eig(mu1, s1, mu2, s2):
    """||mu1-mu2||^2 + Tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), square roots by symmetric eigendecomposition:
    a code path independent of scipy.linalg.sqrtm's Schur method."""
    r1 = psd_sqrt(s1)
    inner = np.linalg.eigvalsh(r1 @ s2 @ r1)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(inner, 0, None)).sum())


def random_gaussian(rng, d):
    a = rng.standard_normal((d, d))
    return rng.standard_normal(d), a @ a.T / d + 0.1 * np.eye(d)


# --- Fréchet distance ---------------------------------------------------------------------------------------------

def test_fid_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).standard_normal((2000, 16)) * 3 + 5
    assert abs(frechet_distance(x, x)) < 1e-6
    assert abs(frechet_distance(jnp.asarray(x, jnp.float32), x.astype(np.float32))) < 1e-6


def test_fid_exact_statistics_match_closed_form():
    rng = np.random.default_rng(1)
    for d in (1, 3, 32):
        (mu1, s1), (mu2, s2) = random_gaussian(rng, d), random_gaussian(rng, d)
        ref = fid_eig(mu1, s1, mu2, s2)
        assert frechet_distance((mu1, s1), (mu2, s2)) == pytest.approx(ref, rel=1e-9, abs=1e-9)
    # Commuting (diagonal) covariances: the trace term is sum (sqrt(a_i) - sqrt(b_i))^2 by hand.
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 16.0])
    mu = np.array([1.0, 0.0, -2.0])
    expect = 1 + 4 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance((mu, np.diag(a)), (np.zeros(3), np.diag(b))) == pytest.approx(expect, rel=1e-12)


def test_fid_sampled_gaussians_near_closed_form_and_eig_path_agrees():
    rng = np.random.default_rng(2)
    d, n = 4, 40000
    (mu1, s1), (mu2, s2) = random_gaussian(rng, d), random_gaussian(rng, d)
    x = rng.multivariate_normal(mu1, s1, n)
    y = rng.multivariate_normal(mu2, s2, n)
    exact = fid_eig(mu1, s1, mu2, s2)
    fid = frechet_distance(x, y)
    # Sampling error of FID is O(sqrt(d / n)) relative to its size here.
    assert fid == pytest.approx(exact, rel=0.05)
    assert fid == pytest.approx(fid_eig(x.mean(0), np.cov(x.T), y.mean(0), np.cov(y.T)), rel=1e-9)


def test_fid_accepts_feature_stats_and_jax_arrays():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((500, 8)), rng.standard_normal((600, 8)) + 0.3
    stats = FeatureStats()
    for i in range(0, 600, 130):
        stats.update(jnp.asarray(y[i:i + 130], jnp.float32))
    ref = frechet_distance(x, y)
    assert frechet_distance(x, stats) == pytest.approx(ref, rel=1e-5)
    assert frechet_distance(jnp.asarray(x), (y.mean(0), np.cov(y.T))) == pytest.approx(ref, rel=1e-5)


def test_fid_singular_covariance_refused_unless_allowed():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((10, 16)), rng.standard_normal((10, 16))
    one_line_error(lambda: frechet_distance(x, y), "a", "10 samples", "dimension 16", "allow_singular")
    fid = frechet_distance(x, y, allow_singular=True)
    # Reference: the Frechet distance from the eigenvalues of sqrt(S1) S2 sqrt(S1), which is PSD and
    # symmetric, so its square roots are exact where sqrtm of the singular product is ill-conditioned.
    s1, s2 = np.cov(x.T), np.cov(y.T)
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    trace_sqrt = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ s2 @ root1), 0, None)))
    ref = np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt
    assert fid == pytest.approx(ref, rel=1e-3)


def test_fid_offsets_covariances_when_sqrtm_is_not_finite(monkeypatch):
    rng = np.random.default_rng(15)
    (mu1, s1), (mu2, s2) = random_gaussian(rng, 5), random_gaussian(rng, 5)
    real_sqrtm, calls = scipy.linalg.sqrtm, []

    def first_call_fails(a):
        calls.append(a)
        return np.full_like(a, np.nan) if len(calls) == 1 else real_sqrtm(a)

    monkeypatch.setattr(scipy.linalg, "sqrtm", first_call_fails)
    eps = 0.01
    got = frechet_distance((mu1, s1), (mu2, s2), eps=eps)
    assert len(calls) == 2
    np.testing.assert_allclose(calls[1], (s1 + eps * np.eye(5)) @ (s2 + eps * np.eye(5)))
    # pytorch-fid keeps the traces of the un-offset covariances.
    ref = fid_eig(mu1, s1 + eps * np.eye(5), mu2, s2 + eps * np.eye(5)) - 2 * 5 * eps
    assert got == pytest.approx(ref, rel=1e-9)


def test_fid_bad_inputs_one_line():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((50, 4))
    one_line_error(lambda: frechet_distance(x, rng.standard_normal((50, 5))), "dimension 4", "b 5")
    bad = x.copy()
    bad[3, 1] = np.nan
    one_line_error(lambda: frechet_distance(x, bad), "b", "(50, 4)", "NaN/inf", "finite")
    one_line_error(lambda: frechet_distance(x[:1], x), "a", "(1, 4)", "at least 2")
    one_line_error(lambda: frechet_distance(x[None], x), "a", "(1, 50, 4)", "2-D")
    one_line_error(lambda: frechet_distance(x, (np.zeros(4), np.eye(3))), "b", "(4,)", "(3, 3)")
    one_line_error(lambda: frechet_distance(x, FeatureStats().update(x[:1])), "b", "FeatureStats", "1 samples")
    # A covariance that is not PSD has no real square root: refused, not silently truncated.
    one_line_error(lambda: frechet_distance((np.zeros(2), np.diag([1.0, -1.0])), (np.zeros(2), np.eye(2))),
                   "imaginary")


# --- FeatureStats -------------------------------------------------------------------------------------------------

def test_feature_stats_matches_numpy_on_uneven_batches():
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((1000, 12)) * rng.uniform(0.1, 5, 12) + rng.standard_normal(12)).astype(np.float32)
    stats = FeatureStats()
    edges = [0, 1, 8, 300, 301, 777, 1000]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        stats.update(x[lo:hi] if lo % 2 else jnp.asarray(x[lo:hi]))
    mean, cov = stats.mean_cov()
    assert stats.n == 1000 and mean.dtype == cov.dtype == np.float64 and cov.shape == (12, 12)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean(0), rtol=1e-6, atol=1e-6)
    ref = np.cov(x64, rowvar=False)
    np.testing.assert_allclose(cov, ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())


def test_feature_stats_precise_with_large_mean_offset():
    """50,000 x 64 features of mean 100, std 1, in batches of 500: covariance relative error < 1e-4 against
    float64 numpy, where the textbook float32 E[xx^T] - mu mu^T loses every digit."""
    rng = np.random.default_rng(7)
    x = (100 + rng.standard_normal((50000, 64))).astype(np.float32)
    stats = FeatureStats()
    for i in range(0, 50000, 500):
        stats.update(x[i:i + 500])
    mean, cov = stats.mean_cov()
    x64 = x.astype(np.float64)
    ref = np.cov(x64, rowvar=False)
    rel = np.linalg.norm(cov - ref) / np.linalg.norm(ref)
    assert rel < 1e-4, rel
    np.testing.assert_allclose(mean, x64.mean(0), rtol=1e-7)
    # The test can fail: naive float32 moments (as a float32 device accumulator would give) are far off.
    xj = jnp.asarray(x)
    naive = (np.asarray(xj.T @ xj, np.float64) - 50000 * np.outer(mean, mean)) / 49999
    assert np.linalg.norm(naive - ref) / np.linalg.norm(ref) > 1e-3


def test_feature_stats_in_float64_under_x64():
    x = np.random.default_rng(16).standard_normal((300, 5)) + 1e4
    with jax.enable_x64(True):
        stats = FeatureStats().update(x[:100]).update(x[100:])
        assert stats._acc[2].dtype == jnp.float64
        mean, cov = stats.mean_cov()
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-14)
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False), rtol=1e-10, atol=1e-12)


def test_feature_stats_bad_batches_one_line_and_state_kept():
    stats = FeatureStats()
    one_line_error(stats.mean_cov, "0 samples", "at least 2")
    stats.update(np.ones((3, 4)))
    bad = np.ones((2, 4))
    bad[0, 0] = np.inf
    one_line_error(lambda: stats.update(bad), "batch", "(2, 4)", "NaN/inf")
    one_line_error(lambda: stats.update(np.ones((2, 5))), "batch", "(2, 5)", "(b, 4)")
    one_line_error(lambda: stats.update(np.ones(4)), "batch", "(4,)")
    assert stats.n == 3
    mean, cov = stats.mean_cov()
    np.testing.assert_array_equal(mean, np.ones(4))
    np.testing.assert_array_equal(cov, np.zeros((4, 4)))


# --- Kernel Inception Distance ------------------------------------------------------------------------------------

def mmd2_unbiased_loop(x, y):
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3 as an explicit double loop."""
    m, d = x.shape
    k = lambda a, b: (a @ b / d + 1) ** 3
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / m**2


def test_kid_unbiased_for_equal_distributions():
    rng = np.random.default_rng(8)
    draws = np.array([kernel_distance(rng.standard_normal((60, 6)), rng.standard_normal((60, 6)), num_subsets=1)[0]
                      for _ in range(400)])
    stderr = draws.std(ddof=1) / np.sqrt(len(draws))
    assert abs(draws.mean()) < 4 * stderr, (draws.mean(), stderr)


def test_kid_shifted_matches_double_loop():
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((25, 5)), rng.standard_normal((25, 5)) + 0.7
    # subset_size is capped at 25: every subset is a permutation of the whole set, so the estimate is exact.
    mean, std = kernel_distance(x, y, num_subsets=3, subset_size=1000)
    ref = mmd2_unbiased_loop(x, y)
    assert ref > 0
    assert mean == pytest.approx(ref, rel=1e-9) and std == pytest.approx(0, abs=1e-9 * ref)
    assert kernel_distance(jnp.asarray(x, jnp.float32), y.astype(np.float32), num_subsets=1)[0] == pytest.approx(
        ref, rel=1e-5)


def test_kid_subsets_spread_and_bad_inputs():
    rng = np.random.default_rng(10)
    x, y = rng.standard_normal((200, 4)), rng.standard_normal((150, 4)) + 0.5
    mean, std = kernel_distance(x, y, num_subsets=20, subset_size=50, seed=1)
    # The subsets replayed (numpy's generator of the seed, rows of a then of b without replacement,
    # subset after subset, as documented) through the double-loop reference.
    rng = np.random.default_rng(1)
    ref = [mmd2_unbiased_loop(x[rng.choice(200, 50, replace=False)], y[rng.choice(150, 50, replace=False)])
           for _ in range(20)]
    assert mean == pytest.approx(np.mean(ref), rel=1e-9) and std == pytest.approx(np.std(ref), rel=1e-7)
    assert std > 0.05 * mean  # the subsets differ: a seed that drew one subset 20 times would fail this
    assert kernel_distance(x, y, num_subsets=20, subset_size=50, seed=2) != (mean, std)
    assert kernel_distance(x, y, num_subsets=20, subset_size=50, seed=1) == (mean, std)
    one_line_error(lambda: kernel_distance(x, y[:, :3]), "(200, 4)", "(150, 3)", "dimension")
    y[0, 0] = np.nan
    one_line_error(lambda: kernel_distance(x, y), "b", "NaN/inf")
    one_line_error(lambda: kernel_distance(x, x, subset_size=1), "subset_size=1")


# --- Precision and recall -----------------------------------------------------------------------------------------

def precision_recall_loop(real, fake, k):
    def radii(s):
        d = np.sqrt(((s[:, None] - s[None]) ** 2).sum(-1))
        np.fill_diagonal(d, np.inf)
        return np.sort(d, axis=1)[:, k - 1]

    def cover(manifold, probes):
        r = radii(manifold)
        d = np.sqrt(((probes[:, None] - manifold[None]) ** 2).sum(-1))
        return np.mean([(d[i] <= r).any() for i in range(len(probes))])

    return cover(real, fake), cover(fake, real)


def test_precision_recall_self_and_disjoint():
    x = np.random.default_rng(11).standard_normal((300, 8))
    assert precision_recall(x, x) == (1.0, 1.0)
    assert precision_recall(x, x + 1000.0) == (0.0, 0.0)


@pytest.mark.parametrize("k, block_size", [(3, None), (1, 7), (5, 64)])
def test_precision_recall_matches_brute_force(k, block_size):
    rng = np.random.default_rng(12 + k)
    real = rng.standard_normal((150, 5))
    fake = rng.standard_normal((120, 5)) * 0.6 + 0.8
    got = precision_recall(real, fake, k=k, block_size=block_size)
    ref = precision_recall_loop(real, fake, k)
    assert got == pytest.approx(ref, abs=1e-7), (got, ref)
    assert 0 < got[0] < 1 and 0 < got[1] < 1


def density_coverage_loop(real, fake, k):
    """Naeem et al. 2020's definitions, float64, one point at a time (the prdc package's formulas)."""
    d_rr = np.sqrt(((real[:, None] - real[None]) ** 2).sum(-1))
    radii = np.sort(d_rr, axis=1)[:, k]  # index 0 is the point itself
    d_rf = np.sqrt(((real[:, None] - fake[None]) ** 2).sum(-1))  # (n_real, n_fake)
    density = sum(int(np.sum(d_rf[:, j] < radii)) for j in range(len(fake))) / (k * len(fake))
    coverage = np.mean([bool(np.any(d_rf[i] < radii[i])) for i in range(len(real))])
    return density, coverage


@pytest.mark.parametrize("k, block_size", [(5, None), (1, 7), (3, 64)])
def test_density_coverage_matches_brute_force(k, block_size):
    rng = np.random.default_rng(20 + k)
    real = rng.standard_normal((140, 6))
    fake = rng.standard_normal((110, 6)) * 0.5 + 0.7
    got = density_coverage(real, fake, k=k, block_size=block_size)
    ref = density_coverage_loop(real, fake, k)
    assert got == pytest.approx(ref, abs=1e-7), (got, ref)
    assert 0 < got[1] < 1 and got[0] > 0


def test_density_coverage_sanity_properties():
    """The paper's checks: two samples of one distribution give density about 1 and coverage near 1; a
    fake set of outliers gives both 0; a fake set collapsed onto one dense point gives a high density
    but a low coverage."""
    rng = np.random.default_rng(30)
    real, same = rng.standard_normal((2000, 16)), rng.standard_normal((2000, 16))
    density, coverage = density_coverage(real, same, k=5)
    assert 0.9 < density < 1.1 and coverage > 0.95, (density, coverage)
    assert density_coverage(real, real + 1000.0, k=5) == (0.0, 0.0)
    collapsed = np.zeros((2000, 16)) + rng.standard_normal((2000, 16)) * 0.01
    density, coverage = density_coverage(real, collapsed, k=5)
    assert density > 2 and coverage < 0.05, (density, coverage)


def test_density_coverage_bad_inputs():
    x = np.zeros((10, 3))
    with pytest.raises(ValueError, match="k=0"):
        density_coverage(x, x, k=0)
    with pytest.raises(ValueError, match="same feature dimension"):
        density_coverage(x, np.zeros((10, 4)))


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_kth_radius_backend_paths_match_a_sorted_reference(backend):
    """The CPU path (a host partition) and the device path (top_k) give each row's k-th smallest
    distance, ties included: rows of duplicated points have several zero distances."""
    from gan_jax.evaluate.metrics import _kth_radius

    rng = np.random.default_rng(14)
    points = rng.standard_normal((40, 6)).astype(np.float32)
    manifold = np.concatenate([points, points[:10], points[:10]])  # the first 10 points 3 times
    rows = np.concatenate([points[:10], rng.standard_normal((20, 6)).astype(np.float32)])
    d2 = ((rows[:, None].astype(np.float64) - manifold[None]) ** 2).sum(-1)
    for k in (1, 2, 3, 5):
        got = np.asarray(_kth_radius(jnp.asarray(rows), jnp.asarray(manifold), k, backend))
        ref = np.sort(d2, axis=1)[:, k]
        assert np.allclose(got, ref, rtol=1e-5, atol=1e-5), (k, np.abs(got - ref).max())
        assert (got[:10] < 1e-4).all() == (k < 3)  # a point's two copies sit at distance 0 (up to rounding)
        assert not np.allclose(got, np.sort(d2, axis=1)[:, k + 1], atol=1e-3)  # the control: the next index
    cpu = _kth_radius(jnp.asarray(rows), jnp.asarray(manifold), 3, "cpu")
    assert np.array_equal(np.asarray(cpu), np.asarray(_kth_radius(jnp.asarray(rows), jnp.asarray(manifold), 3, "gpu")))


def test_precision_recall_bad_inputs():
    x = np.random.default_rng(13).standard_normal((10, 3))
    one_line_error(lambda: precision_recall(x, x[:, :2]), "(10, 3)", "(10, 2)", "dimension")
    one_line_error(lambda: precision_recall(x, x[:3], k=3), "fake", "(3, 3)", "at least 4")
    one_line_error(lambda: precision_recall(x, x, k=0), "k=0")
    one_line_error(lambda: precision_recall(x * np.nan, x), "real", "NaN/inf")


# --- Inception Score ----------------------------------------------------------------------------------------------

def test_inception_score_closed_forms():
    c = 10
    mean, std = inception_score(np.full((200, c), 1 / c))
    assert mean == pytest.approx(1, abs=1e-12) and std == pytest.approx(0, abs=1e-12)
    # Each split of 20 rows holds every class twice: p(y) is uniform and every KL is log C.
    mean, std = inception_score(np.tile(np.eye(c), (20, 1)), splits=10)
    assert mean == pytest.approx(c, rel=1e-12) and std == pytest.approx(0, abs=1e-12)


def test_inception_score_matches_loop():
    from scipy.stats import entropy

    probs = np.random.default_rng(14).dirichlet(np.full(7, 0.3), size=90)
    scores = []
    for part in np.array_split(probs, 3):
        py = part.mean(0)
        scores.append(np.exp(np.mean([entropy(row, py) for row in part])))
    assert inception_score(probs, splits=3) == pytest.approx((np.mean(scores), np.std(scores)), rel=1e-10)


def test_inception_score_bad_inputs():
    p = np.full((20, 4), 0.25)
    neg = p.copy()
    neg[2] = [1.5, -0.5, 0, 0]
    one_line_error(lambda: inception_score(neg), "probs", "negative")
    one_line_error(lambda: inception_score(p * 1.01), "probs", "summing to 1", "1e-3")
    one_line_error(lambda: inception_score(p, splits=30), "probs", "(20, 4)", "at least 30")
    one_line_error(lambda: inception_score(p, splits=0), "splits=0")
