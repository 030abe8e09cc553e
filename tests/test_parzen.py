"""The Parzen-window log-likelihood (gan_jax/evaluate/parzen.py) against scipy's Gaussian densities,
and its evaluator on a trained run."""

import numpy as np
import pytest
from conftest import load_experiment
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from gan_jax.evaluate import parzen


def reference(x: np.ndarray, centers: np.ndarray, sigma: float) -> np.ndarray:
    """log (1/M) sum_i N(x; mu_i, sigma^2 I), one scipy density per centre."""
    dim = x.shape[1]
    per_center = np.stack([multivariate_normal(mu, sigma**2 * np.eye(dim)).logpdf(x) for mu in centers])
    return logsumexp(per_center, axis=0) - np.log(len(centers))


@pytest.mark.parametrize("sigma", [0.05, 0.3, 2.0])
def test_log_likelihoods_equal_the_gaussian_mixture_density(sigma):
    rng = np.random.default_rng(0)
    x, centers = rng.uniform(size=(9, 6)), rng.uniform(size=(40, 6))
    got = parzen.log_likelihoods(x, centers, [sigma], batch_size=4)[0]
    np.testing.assert_allclose(got, reference(x, centers, sigma), rtol=1e-11, atol=1e-9)


def test_cross_validation_picks_the_best_validation_sigma_and_scores_the_test_with_it():
    rng = np.random.default_rng(1)
    samples = rng.normal(0.5, 0.2, size=(300, 3))
    validation, test = rng.normal(0.5, 0.2, size=(50, 3)), rng.normal(0.5, 0.2, size=(60, 3))
    sigmas = np.logspace(-2, 0.5, 8)
    got = parzen.parzen_window(samples, validation, test, sigmas, batch_size=7)
    means = [reference(validation, samples, s).mean() for s in sigmas]
    best = int(np.argmax(means))
    assert 0 < best < len(sigmas) - 1  # an interior optimum: the choice is informative
    assert got["sigma"] == sigmas[best]
    np.testing.assert_allclose(got["validation_ll_nats"], means, rtol=1e-11)
    ll = reference(test, samples, sigmas[best])
    np.testing.assert_allclose(got["test_ll_nats"], ll.mean(), rtol=1e-11)
    np.testing.assert_allclose(got["test_ll_standard_error"], ll.std() / np.sqrt(len(ll)), rtol=1e-9)


def test_the_paper_grid_and_validation_protocol():
    np.testing.assert_allclose(parzen.SIGMAS, [10 ** (-1 + i / 9) for i in range(10)], rtol=1e-12)
    assert parzen.VALIDATION_EXAMPLES == 1000 and parzen.VALIDATION_FROM_END == 10_000


def test_the_evaluator_is_opt_in_and_refuses_a_small_training_split():
    from gan_jax.errors import ConfigError
    from gan_jax.evaluate import evaluators
    from gan_jax.experiment import Experiment

    cfg = load_experiment("quickstart:smoke")
    exp = Experiment(cfg, load_train_data=False)
    assert "parzen" not in evaluators.selected(exp)
    cfg.eval.metrics = "parzen"
    with pytest.raises(ConfigError, match=r"'parzen' needs a training split of at least 20000 examples .* has 4500$"):
        evaluators.selected(Experiment(cfg, load_train_data=False))


def test_the_evaluator_scores_a_trained_mnist_run(data_dir, tmp_path):
    import gan_jax
    from gan_jax.evaluate import evaluators

    cfg = load_experiment("gan_mnist:smoke")
    cfg.data.dir = str(data_dir)
    gan_jax.train(cfg, tmp_path / "run")
    run = gan_jax.load_run(tmp_path / "run")
    result = run.evaluate(metrics="parzen", num_samples=500, num_examples=200)["parzen"]
    assert result["samples"] == 500 and result["examples"] == 200 and result["sigma"] in parzen.SIGMAS
    assert len(result["validation_ll_nats"]) == 10 and np.isfinite(result["test_ll_nats"])
    assert result["sigma"] == parzen.SIGMAS[int(np.argmax(result["validation_ll_nats"]))]
    assert evaluators.EVALUATORS["parzen"].default is False
