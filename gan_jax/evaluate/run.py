"""`launch.py --mode=eval`: evaluates a saved checkpoint and writes DIR/eval_step_XXXXXXX.json.
VAEs: the test negative ELBO, the importance-weighted estimate of -log p(x) (k = eval.iwae_k) and the
active units, on the test split binarized once with a fixed key. GANs on 2D mixtures: the PacGAN mode
metrics on eval.num_samples samples. All in nats per example where a unit applies."""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gan_jax import data, keys, losses
from gan_jax.evaluate import modes, vae_metrics
from gan_jax.sample import restore


def vae_test_negative_elbo(exp, state, x: np.ndarray, batch_size: int = 500, seed: int = 0) -> float:
    """Mean over x (N, H, W, C) in the model's range (binarized where the data is) of the one-sample
    negative ELBO, in nats per example; the noise of example j is keyed by (seed, j)."""
    V, cfg = exp.nets["vae"], exp.cfg

    @jax.jit
    def batch_elbo(params, x, ids):
        eps = jax.vmap(lambda j: jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(seed), j),
                                                   (cfg.model.latent_dim,)))(ids)
        decoded, mean, logvar = V.apply({"params": params}, x, train=False, eps=eps)
        return losses.negative_elbo(x, decoded, mean, logvar, cfg.loss.likelihood, 1.0, cfg.loss.gaussian_std)[1][
            "neg_elbo"] * x.shape[0]

    total = 0.0
    for i in range(0, len(x), batch_size):
        batch = x[i:i + batch_size]
        total += float(batch_elbo(state.params["vae"], jnp.asarray(batch), jnp.arange(i, i + len(batch))))
    return total / len(x)


def evaluate_vae(exp, state) -> dict:
    cfg = exp.cfg
    images, _ = data.load_arrays(cfg.data.name, cfg.data.eval_split, cfg.data.source, cfg.data.dir)
    if cfg.eval.num_examples is not None:
        images = images[:cfg.eval.num_examples]
    x = vae_metrics.binarize_once(images, cfg.seed) if exp.dataset.binarize else images.astype(np.float32) / 255.0
    V, params = exp.nets["vae"], state.params["vae"]
    log_px = vae_metrics.dataset_iwae(V, params, x, cfg.eval.iwae_k, seed=cfg.seed, likelihood=cfg.loss.likelihood,
                                      gaussian_std=cfg.loss.gaussian_std)
    return {"split": cfg.data.eval_split, "examples": len(x),
            "test_neg_elbo_nats": vae_test_negative_elbo(exp, state, x, cfg.eval.batch_size, cfg.seed),
            "test_nll_iwae_nats": float(-log_px.mean()), "iwae_k": cfg.eval.iwae_k,
            "active_units": vae_metrics.active_units(vae_metrics.posterior_means(V, params, x)),
            "latent_dim": cfg.model.latent_dim}


def evaluate_mixture_gan(exp, state, step: int) -> dict:
    """The PacGAN protocol: eval.num_samples samples from a key folded from the seed and the step."""
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(exp.seed), keys.EVAL_SAMPLES), step)
    points = exp.sample(state, exp.cfg.eval.num_samples, key=key)
    return {"samples": exp.cfg.eval.num_samples, **modes.mixture_mode_metrics(points, exp.cfg.data.name)}


def evaluate(workdir: str, step: int | None = None, cfg: ml_collections.ConfigDict | None = None) -> dict:
    exp, step, state = restore(workdir, step, cfg)
    result = {"step": int(step)}
    if exp.cfg.objective == "vae":
        result.update(evaluate_vae(exp, state))
    elif exp.dataset.mixture is not None:
        result.update(evaluate_mixture_gan(exp, state, step))
    # Sample-quality metrics of image GANs (FID/KID/precision-recall in a classifier's feature space)
    # need the shipped classifiers of the evaluation issue; until then, what is cheap and exact.
    result["num_parameters"] = {k: int(sum(np.size(x) for x in jax.tree.leaves(v)))
                                for k, v in state.params.items()}
    if jax.process_index() == 0:
        path = os.path.join(workdir, f"eval_step_{step:07d}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(result, f, indent=2)
        os.replace(path + ".tmp", path)
        print(json.dumps(result))
    return result
