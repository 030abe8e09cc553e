"""Evaluators, registered by name: each computes metrics of a train state, for `launch.py --mode=eval`
and, every `eval.every` steps, inside training (metrics.jsonl and TensorBoard, with the step).

`eval.metrics` names them (empty: every registered evaluator that fits the run). A new one is one
function and its `fits` test:

    @register("my_metric", fits=lambda exp: exp.dataset.mixture is not None)
    def my_metric(exp, state, step: int) -> dict: ...
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import jax
import numpy as np

from gan_jax import data, keys
from gan_jax.errors import ConfigError
from gan_jax.evaluate import modes, vae_metrics


@dataclass(frozen=True)
class Evaluator:
    fn: Callable[..., dict]  # (experiment, state laid out as Experiment.init_state places it, step) -> metrics
    fits: Callable[..., bool]  # (experiment) -> whether the evaluator applies to the run
    needs: str  # said when it does not fit


EVALUATORS: dict[str, Evaluator] = {}


def register(name: str, fits: Callable[..., bool], needs: str):
    def wrap(fn):
        EVALUATORS[name] = Evaluator(fn, fits, needs)
        return fn

    return wrap


def selected(exp) -> list[str]:
    """The evaluators of a run: eval.metrics, or every one that fits. Raises ConfigError, naming the
    field, for an unknown name or one that does not fit the run's data or objective."""
    names = [n.strip() for n in exp.cfg.eval.metrics.split(",") if n.strip()]
    if not names:
        return [n for n, e in EVALUATORS.items() if e.fits(exp)]
    for n in names:
        if n not in EVALUATORS:
            raise ConfigError(f"eval.metrics={exp.cfg.eval.metrics!r}: {n!r} is unknown; accepted: "
                              f"{', '.join(sorted(EVALUATORS))}")
        if not EVALUATORS[n].fits(exp):
            raise ConfigError(f"eval.metrics={exp.cfg.eval.metrics!r}: {n!r} needs {EVALUATORS[n].needs}; "
                              f"this run has objective={exp.cfg.objective!r}, data.name={exp.cfg.data.name!r}")
    return names


def run_all(exp, state, step: int, names: list[str]) -> dict:
    """{evaluator name: its metrics} for `names`."""
    return {n: EVALUATORS[n].fn(exp, state, step) for n in names}


def flat(results: dict) -> dict:
    """{'modes': {'modes_captured': 6}} -> {'modes/modes_captured': 6}: metrics.jsonl and TensorBoard names."""
    return {f"{name}/{k}": v for name, metrics in results.items() for k, v in metrics.items()}


@register("modes", fits=lambda exp: exp.dataset.mixture is not None, needs="a 2D mixture (ring8, grid25)")
def mixture_modes(exp, state, step: int) -> dict:
    """The PacGAN protocol on eval.num_samples samples from a key of (seed, step): modes captured, the
    high-quality fraction (within 3 std of the nearest mode) and the KL of their mode histogram to uniform."""
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(exp.seed), keys.EVAL_SAMPLES), step)
    points = exp.sample(state, exp.cfg.eval.num_samples, key=key)
    metrics = modes.mixture_mode_metrics(points, exp.cfg.data.name)
    if not math.isfinite(metrics["reverse_kl"]):  # no high-quality sample: undefined, and JSON has no inf
        metrics["reverse_kl"] = None
    return {"samples": exp.cfg.eval.num_samples, **metrics}


@register("vae_likelihood", fits=lambda exp: exp.cfg.objective == "vae", needs="objective='vae'")
def vae_likelihood(exp, state, step: int) -> dict:
    """On the test split (eval.num_examples of it), binarized once with a key of (seed, example): the
    one-sample negative ELBO, the IWAE estimate of -log p(x) with eval.iwae_k samples, and the active
    units; nats per example."""
    cfg = exp.cfg
    images, _ = data.load_arrays(cfg.data.name, cfg.data.eval_split, cfg.data.source, cfg.data.dir)
    if cfg.eval.num_examples is not None:
        images = images[:cfg.eval.num_examples]
    x = vae_metrics.binarize_once(images, cfg.seed) if exp.dataset.binarize else images.astype(np.float32) / 255.0
    V, params = exp.nets["vae"], state.params["vae"]
    options = dict(seed=cfg.seed, batch_size=cfg.eval.batch_size, likelihood=cfg.loss.likelihood,
                   gaussian_std=cfg.loss.gaussian_std)
    log_px = vae_metrics.dataset_iwae(V, params, x, cfg.eval.iwae_k, **options)
    one = vae_metrics.dataset_iwae(V, params, x, 1, **options)  # k = 1: the one-sample ELBO
    return {"split": cfg.data.eval_split, "examples": len(x), "test_neg_elbo_nats": float(-one.mean()),
            "test_nll_iwae_nats": float(-log_px.mean()), "iwae_k": cfg.eval.iwae_k,
            "active_units": vae_metrics.active_units(vae_metrics.posterior_means(V, params, x)),
            "latent_dim": cfg.model.latent_dim}
