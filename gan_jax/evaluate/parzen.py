"""The Gaussian Parzen-window log-likelihood of Goodfellow et al. 2014 (Table 1), after Breuleux et
al. 2011: a mixture of isotropic Gaussians of width sigma centred on M generated samples, its bandwidth
chosen on validation data from SIGMAS, its mean log-density reported on the test data.

    log p(x) = logsumexp_i(-||x - mu_i||^2 / (2 sigma^2)) - log M - D log(sigma sqrt(2 pi))

As the authors' parzen_ll.py: 10,000 samples, 1,000 validation examples, sigma on a log grid from 0.1
to 1 (10 values), pixels in [0, 1], the standard error over test examples. Float64 throughout. The
estimate is known to rank models poorly in high dimensions (Theis et al. 2016): a reference point
for the paper's table, not a measure of sample quality."""

from collections.abc import Iterator

import numpy as np
from scipy.special import logsumexp

SIGMAS = np.logspace(-1.0, 0.0, 10)
VALIDATION_EXAMPLES = 1000
# The validation examples are the training split's VALIDATION_EXAMPLES starting this far from its end:
# MNIST's train[50000:51000], the held-out part of the split in the paper's pylearn2 setup.
VALIDATION_FROM_END = 10_000


def _squared_distances(x: np.ndarray, centers: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """||x_n - mu_i||^2 for batches of x: arrays (b, M), float64."""
    centers = np.asarray(centers, np.float64)
    center_norms = np.einsum("md,md->m", centers, centers)
    for start in range(0, len(x), batch_size):
        xb = np.asarray(x[start:start + batch_size], np.float64)
        d2 = np.einsum("nd,nd->n", xb, xb)[:, None] + center_norms[None, :] - 2.0 * xb @ centers.T
        yield np.maximum(d2, 0.0)  # rounding can take an exact 0 below it


def _log_density(d2: np.ndarray, sigma: float, dim: int) -> np.ndarray:
    m = d2.shape[1]
    return logsumexp(-d2 / (2.0 * sigma**2), axis=1) - np.log(m) - dim * np.log(sigma * np.sqrt(2.0 * np.pi))


def log_likelihoods(x: np.ndarray, centers: np.ndarray, sigmas, batch_size: int = 500) -> np.ndarray:
    """log p(x_n) under the Parzen window of width sigma around `centers`, for every sigma:
    x (N, D), centers (M, D), sigmas (S,) -> (S, N) float64, nats."""
    sigmas = np.atleast_1d(np.asarray(sigmas, np.float64))
    out = [np.stack([_log_density(d2, s, x.shape[1]) for s in sigmas])
           for d2 in _squared_distances(x, centers, batch_size)]
    return np.concatenate(out, axis=1)


def parzen_window(samples: np.ndarray, validation: np.ndarray, test: np.ndarray, sigmas=SIGMAS,
                  batch_size: int = 500) -> dict:
    """The paper's protocol on flattened arrays in [0, 1]: samples (M, D), validation (V, D), test
    (N, D). Returns sigma (the grid value with the highest mean validation log-likelihood), the test
    mean log-likelihood and its standard error (nats), and the validation means per sigma."""
    validation_means = log_likelihoods(validation, samples, sigmas, batch_size).mean(axis=1)
    sigma = float(np.asarray(sigmas)[int(np.argmax(validation_means))])
    ll = log_likelihoods(test, samples, [sigma], batch_size)[0]
    return {"sigma": sigma, "test_ll_nats": float(ll.mean()),
            "test_ll_standard_error": float(ll.std() / np.sqrt(len(ll))),
            "validation_ll_nats": [float(v) for v in validation_means]}
