"""Evaluation: the evaluators, registered by name (evaluators.py), the VAE's test-set likelihood
(vae_metrics.py), sample-quality metrics over feature arrays (metrics.py: FID, KID, precision/recall,
density/coverage, Inception Score) and `score(a, b, ...)`, any two sets of images scored against each
other (scoring.py; `python -m gan_jax.evaluate`)."""

from gan_jax.evaluate.metrics import (
    FeatureStats,
    density_coverage,
    frechet_distance,
    inception_score,
    kernel_distance,
    precision_recall,
)

__all__ = ["FeatureStats", "density_coverage", "frechet_distance", "inception_score", "kernel_distance",
           "precision_recall", "score"]


def __getattr__(name: str):
    # `score` imports the networks and the sampling code: only when asked for, not with the metrics.
    if name == "score":
        from gan_jax.evaluate.scoring import score

        return score
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
