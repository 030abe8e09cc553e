"""`launch.py --mode=eval`: evaluates a saved checkpoint and writes DIR/eval_step_XXXXXXX.json.
VAEs: the test negative ELBO in nats (dynamically binarized data binarized once with a fixed key)."""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gan_jax import data, losses
from gan_jax.sample import restore
from gan_jax.steps import to_model_range


def vae_test_negative_elbo(exp, state, images_u8: np.ndarray, batch_size: int = 500, seed: int = 0) -> float:
    """Mean over `images_u8` (N, H, W, C) of the one-sample negative ELBO, in nats per example."""
    V, cfg = exp.nets["vae"], exp.cfg

    @jax.jit
    def batch_elbo(params, x_u8, key):
        x = to_model_range(x_u8, "vae")
        if exp.dataset.binarize:
            x = jax.random.bernoulli(jax.random.fold_in(key, 0), x).astype(jnp.float32)
        decoded, mean, logvar = V.apply({"params": params}, x, train=False, rngs={"latent": jax.random.fold_in(key, 1)})
        return losses.negative_elbo(x, decoded, mean, logvar, cfg.loss.likelihood, 1.0, cfg.loss.gaussian_std)[1][
            "neg_elbo"] * x.shape[0]

    key = jax.random.PRNGKey(seed)
    total = 0.0
    for i in range(0, len(images_u8), batch_size):
        total += float(batch_elbo(state.params["vae"], images_u8[i:i + batch_size], jax.random.fold_in(key, i)))
    return total / len(images_u8)


def evaluate(workdir: str, step: int | None = None, cfg: ml_collections.ConfigDict | None = None) -> dict:
    exp, step, state = restore(workdir, step, cfg)
    result = {"step": int(step)}
    if exp.cfg.objective == "vae":
        images, _ = data.load_arrays(exp.cfg.data.name, exp.cfg.data.eval_split, exp.cfg.data.source, exp.cfg.data.dir)
        result["test_neg_elbo_nats"] = vae_test_negative_elbo(exp, state, images, exp.cfg.eval.batch_size)
        result["examples"] = len(images)
    else:
        # GAN metrics (FID, Inception score, mode counts) are a later issue; report what is cheap and exact.
        result["num_parameters"] = {k: int(sum(np.size(x) for x in jax.tree.leaves(v)))
                                    for k, v in state.params.items()}
    if jax.process_index() == 0:
        path = os.path.join(workdir, f"eval_step_{step:07d}.json")
        with open(path, "w") as f:
            json.dump(result, f, indent=2)
        print(json.dumps(result))
    return result
