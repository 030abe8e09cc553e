"""The latents that samples are drawn from: N(0, I), or truncated (the truncation trick of Brock et al.
2019, BigGAN, sec. 3.1: "resampling the values with magnitude above a chosen threshold", which trades
variety for fidelity). A truncation is one function (key, shape, threshold) -> z registered in
TRUNCATIONS; eval.truncation (0: none) and eval.truncation_method choose one for the samples and the
evaluators (never for training or its grids)."""

from collections.abc import Callable

import jax
import jax.numpy as jnp

Truncation = Callable[[jax.Array, tuple[int, ...], float], jax.Array]
TRUNCATIONS: dict[str, Truncation] = {
    # Every coordinate beyond the threshold drawn again until within it: N(0, 1) conditioned on
    # |z_i| <= threshold, which jax draws directly (inverse CDF), not by a loop of redraws.
    "resample": lambda key, shape, threshold: jax.random.truncated_normal(key, -threshold, threshold, shape),
    # Every coordinate clipped into [-threshold, threshold] (a point mass at each end).
    "clip": lambda key, shape, threshold: jnp.clip(jax.random.normal(key, shape), -threshold, threshold),
}


def draw(key: jax.Array, shape: tuple[int, ...], truncation: float = 0.0, method: str = "resample") -> jax.Array:
    """Latents float32 `shape` from `key`: jax.random.normal(key, shape) with truncation 0 (the same
    bits as untruncated sampling always drew), else TRUNCATIONS[method] at threshold `truncation` > 0."""
    if truncation <= 0:
        return jax.random.normal(key, shape)
    return TRUNCATIONS[method](key, shape, float(truncation))


def record(cfg) -> dict:
    """What an evaluation's result records of its samples' latents: {'truncation': {'threshold', 'method'}}
    where eval.truncation > 0, else {} (untruncated, as before truncation existed)."""
    if cfg.eval.truncation <= 0:
        return {}
    return {"truncation": {"threshold": float(cfg.eval.truncation), "method": cfg.eval.truncation_method}}
