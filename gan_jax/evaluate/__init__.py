"""Evaluation: the evaluators, registered by name (evaluators.py), the VAE's test-set likelihood
(vae_metrics.py) and sample-quality metrics over feature arrays (metrics.py: FID, KID, precision/recall,
density/coverage, Inception Score)."""

from gan_jax.evaluate.metrics import (
    FeatureStats,
    density_coverage,
    frechet_distance,
    inception_score,
    kernel_distance,
    precision_recall,
)

__all__ = ["FeatureStats", "density_coverage", "frechet_distance", "inception_score", "kernel_distance",
           "precision_recall"]
