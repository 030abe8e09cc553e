"""VAE likelihood metrics: the importance-weighted bound on log p(x) (IWAE, Burda et al. 2015), active
units (Burda et al. 2015, section 5.2) and a batch-size-independent binarization of a test set.

    from gan_jax.evaluate import vae_metrics
    x = vae_metrics.binarize_once(images_u8, seed=0)              # once for the whole test set
    nll = -vae_metrics.dataset_iwae(exp.nets["vae"], state.params["vae"], x, k=5000,
                                    likelihood=cfg.loss.likelihood, gaussian_std=cfg.loss.gaussian_std).mean()
    au = vae_metrics.active_units(vae_metrics.posterior_means(exp.nets["vae"], state.params["vae"], x))

Every result is in nats per example. The noise of importance sample i of example j is drawn from
fold_in(fold_in(key, example_id_j), i), so an estimate depends on neither `batch_k` (how many samples
go through the decoder at once) nor on how the data set is cut into batches (pass global example ids)."""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import losses


@functools.partial(jax.jit, static_argnames=("vae", "likelihood", "gaussian_std", "batch_k"))
def _log_weights(vae: nn.Module, params, x: jnp.ndarray, key: jax.Array, example_ids: jnp.ndarray,
                 start: jnp.ndarray, *, likelihood: str, gaussian_std: float, batch_k: int) -> jnp.ndarray:
    """log p(x, z_i) - log q(z_i | x) for samples i = start .. start + batch_k - 1: (batch_k, N) float32."""
    mean, logvar = vae.apply({"params": params}, x, method=vae.encode)  # (N, L) each
    n, latent = mean.shape
    sample = jnp.broadcast_to((start + jnp.arange(batch_k))[:, None], (batch_k, n)).reshape(-1)
    example = jnp.broadcast_to(example_ids[None, :], (batch_k, n)).reshape(-1)
    # one flat vmap over (sample, example) pairs compiles faster than nested ones; same values
    eps = jax.vmap(lambda i, j: jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, j), i), (latent,),
                                                  mean.dtype))(sample, example).reshape(batch_k, n, latent)
    z = mean + jnp.exp(0.5 * logvar) * eps
    decoded = vae.apply({"params": params}, z.reshape(-1, z.shape[-1]), method=vae.decode)  # (batch_k * N, ...)
    x_rep = jnp.broadcast_to(x, (batch_k, *x.shape)).reshape(decoded.shape)
    rows = lambda a: a.reshape(-1, latent)
    logvar_rep = jnp.broadcast_to(logvar, (batch_k, n, latent))
    return losses.log_importance_weights(x_rep, decoded, rows(z), rows(eps), rows(logvar_rep), likelihood,
                                         gaussian_std).reshape(batch_k, n)


def iwae_log_likelihood(vae: nn.Module, params, x: np.ndarray, k: int, key: jax.Array, batch_k: int = 100,
                        likelihood: str = "bernoulli", gaussian_std: float = 0.1,
                        example_ids: np.ndarray | None = None) -> np.ndarray:
    """The k-sample importance-weighted estimate of log p(x) of each example, in nats (its negation is the
    NLL): log (1/k) sum_i p(x, z_i) / q(z_i | x), z_i ~ q(z | x), p(x, z) = p(x | z) N(z; 0, I).

    vae: the VAE module (exp.nets['vae']) and its `params`; x (N, H, W, C) float in the model's range
    (binarized {0, 1} for the Bernoulli likelihood, see `binarize_once`); likelihood and gaussian_std as
    cfg.loss.likelihood and cfg.loss.gaussian_std. The k samples go through the decoder batch_k at a time
    (batch_k * N decoder rows per call; the last call is padded, not recompiled); the (k, N) log-weights are
    kept (4 k N bytes) and reduced with one float64 logsumexp, so the result does not depend on batch_k.
    example_ids (N,) int: global ids that key each example's noise (default 0 .. N-1).
    Returns (N,) float64. E[result] <= log p(x), increasing in k, -> log p(x) as k -> inf; k = 1 is
    a one-sample ELBO estimate."""
    if k < 1 or batch_k < 1:
        raise ValueError(f"k and batch_k must be >= 1, got k={k}, batch_k={batch_k}")
    x = jnp.asarray(x, jnp.float32)
    ids = jnp.arange(len(x)) if example_ids is None else jnp.asarray(example_ids)
    batch_k = min(batch_k, k)
    chunks = [np.asarray(_log_weights(vae, params, x, key, ids, jnp.asarray(start), likelihood=likelihood,
                                      gaussian_std=float(gaussian_std), batch_k=batch_k))
              for start in range(0, k, batch_k)]
    log_w = np.concatenate(chunks, axis=0)[:k].astype(np.float64)  # (k, N)
    top = log_w.max(axis=0)  # finite: every log-weight is a sum of finite log-densities
    return top + np.log(np.exp(log_w - top).sum(axis=0)) - math.log(k)


def dataset_iwae(vae: nn.Module, params, x: np.ndarray, k: int, seed: int = 0, batch_size: int = 100,
                 batch_k: int = 100, likelihood: str = "bernoulli", gaussian_std: float = 0.1) -> np.ndarray:
    """`iwae_log_likelihood` of every example of a data set x (N, H, W, C), `batch_size` examples at a time
    (the last batch padded, so one compiled shape), keyed by (seed, global example index): the same (N,)
    nats whatever batch_size and batch_k. Mean of the negation = the test NLL in nats per example."""
    key = jax.random.PRNGKey(seed)
    x = np.asarray(x, np.float32)
    batch_size = max(1, min(batch_size, len(x)))
    out = []
    for i in range(0, len(x), batch_size):
        batch = x[i:i + batch_size]
        padded = np.concatenate([batch, np.zeros((batch_size - len(batch), *x.shape[1:]), np.float32)])
        out.append(iwae_log_likelihood(vae, params, padded, k, key, batch_k, likelihood, gaussian_std,
                                       example_ids=np.arange(i, i + batch_size))[:len(batch)])
    return np.concatenate(out) if out else np.zeros((0,))


@functools.partial(jax.jit, static_argnames="vae")
def _encode_mean(vae: nn.Module, params, x: jnp.ndarray) -> jnp.ndarray:
    return vae.apply({"params": params}, x, method=vae.encode)[0]


def posterior_means(vae: nn.Module, params, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """The posterior means E_q[z | x] of a data set x (N, H, W, C): (N, latent_dim) float32."""
    out = [np.asarray(_encode_mean(vae, params, jnp.asarray(x[i:i + batch_size], jnp.float32)))
           for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, vae.latent_dim), np.float32)


def active_units(posterior_means: np.ndarray, threshold: float = 0.01) -> int:
    """How many latent dimensions u are active: Var_x(E_q[u | x]) > threshold (Burda et al. 2015), with
    posterior_means (n, latent_dim) over the data set and the population variance (ddof 0) in float64."""
    means = np.asarray(posterior_means, np.float64)
    if means.ndim != 2:
        raise ValueError(f"posterior_means must be (n, latent_dim), got {means.shape}")
    return int(np.count_nonzero(means.var(axis=0) > threshold))


def binarize_once(images_u8: np.ndarray, seed: int = 0) -> np.ndarray:
    """A fixed Bernoulli binarization of a data set: images_u8 (N, H, W, C) uint8 -> (N, H, W, C) float32
    in {0, 1}, pixel on with probability value / 255. Example j uses fold_in(PRNGKey(seed), j), so the
    result is a function of (seed, j, image j) only, the same whatever batch size is used afterwards."""
    images_u8 = np.asarray(images_u8)
    if images_u8.dtype != np.uint8:
        raise ValueError(f"binarize_once takes uint8 images, got {images_u8.dtype}")
    key = jax.random.PRNGKey(seed)
    out = np.empty(images_u8.shape, np.float32)
    chunk = max(1, min(10000, len(images_u8)))  # one compiled shape: the last chunk is padded
    for i in range(0, len(images_u8), chunk):
        batch = images_u8[i:i + chunk]
        padded = np.concatenate([batch, np.zeros((chunk - len(batch), *batch.shape[1:]), np.uint8)])
        out[i:i + len(batch)] = np.asarray(_bernoulli_rows(key, padded, jnp.arange(i, i + chunk)))[:len(batch)]
    return out


@jax.jit
def _bernoulli_rows(key: jax.Array, batch_u8: jnp.ndarray, ids: jnp.ndarray) -> jnp.ndarray:
    """batch_u8 (B, ...) uint8 -> Bernoulli(value / 255) bits (B, ...) float32, row r keyed by fold_in(key, ids[r])."""
    p = batch_u8.astype(jnp.float32) / 255.0
    return jax.vmap(lambda j, pj: jax.random.bernoulli(jax.random.fold_in(key, j), pj))(ids, p).astype(jnp.float32)
