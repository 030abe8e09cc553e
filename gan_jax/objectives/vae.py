"""The VAE objective (Kingma & Welling 2013): the negative ELBO with the KL term weighted by beta
(beta-VAE, Higgins et al. 2017; beta = 1 is the VAE), or with loss.iwae_k = k > 1 the importance-weighted
bound of Burda et al. 2015 (IWAE): -log (1/k) sum_i p(x, z_i) / q(z_i | x), z_i ~ q(z | x), or with
loss.elbo_samples = k > 1 Burda et al.'s "VAE with k samples": the ELBO estimated from k latent samples
per example, -(1/k) sum_i log p(x, z_i) / q(z_i | x) (the mean of the same log-weights, where IWAE takes
their log-mean-exp; the KL is then estimated by sampling too, not in closed form)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gan_jax import keys, losses
from gan_jax.errors import ConfigError
from gan_jax.objectives import register
from gan_jax.objectives.base import Hyperparameters, Steps, TrainState, learning_rate

fold = jax.random.fold_in


@register("vae", nets=("vae",), needs_images=True)
class VaeSteps(Steps):
    """Steps of a VAE: batch (1, local_batch, H, W, C) uint8 per update, model range [0, 1]."""

    unit_range = True
    accumulates_gradients = True
    HYPERPARAMETERS = {"beta": "loss.beta"}

    def __init__(self, cfg: ml_collections.ConfigDict, nets: dict, example_shape: tuple[int, ...],
                 mixture: str | None = None, binarize: bool = False, axis_name: str | None = None):
        super().__init__(cfg, nets, example_shape, mixture, binarize, axis_name)
        losses.get_likelihood(cfg.loss.likelihood)  # refuse an unknown name before a workdir is touched
        if cfg.loss.name != "elbo":
            raise ConfigError(f"loss.name={cfg.loss.name!r} is not accepted for objective={cfg.objective!r}; "
                              "accepted: elbo (loss.iwae_k > 1 for the importance-weighted bound)")
        self.iwae_k = cfg.loss.iwae_k
        self.elbo_samples = cfg.loss.elbo_samples
        if self.iwae_k > 1 and self.elbo_samples > 1:
            raise ConfigError(f"loss.elbo_samples={self.elbo_samples} with loss.iwae_k={self.iwae_k}: the k samples "
                              "are either averaged (VAE) or importance-weighted (IWAE); accepted: one of them > 1")
        if self.iwae_k > 1 and cfg.loss.beta != 1.0:
            raise ConfigError(f"loss.beta={cfg.loss.beta!r} with loss.iwae_k={self.iwae_k}: the importance-weighted "
                              "bound has no KL term to weight; accepted: loss.beta=1.0 with iwae_k > 1")
        if self.elbo_samples > 1 and cfg.loss.beta != 1.0:
            raise ConfigError(f"loss.beta={cfg.loss.beta!r} with loss.elbo_samples={self.elbo_samples}: the sampled "
                              "ELBO has no separate KL term to weight; accepted: loss.beta=1.0 with elbo_samples > 1")
        self.samples = max(self.iwae_k, self.elbo_samples)  # latent samples per example and update

    def hyperparameters(self) -> Hyperparameters:
        return {**super().hyperparameters(), "beta": np.float32(self.cfg.loss.beta)}

    def init_state(self, seed: int) -> TrainState:
        key = jax.random.PRNGKey(seed)
        init_key = fold(key, keys.INIT)
        x = jnp.zeros((2, *self.example_shape), jnp.float32)
        variables = self.nets["vae"].init({"params": fold(init_key, 0), "dropout": init_key, "latent": init_key}, x,
                                          train=False)
        params, stats = {"vae": variables["params"]}, {"vae": variables.get("batch_stats", {})}
        return TrainState(jnp.zeros((), jnp.int32), key, params, stats,
                          {"vae": self.optimizers["vae"].init(params["vae"])})

    def noise(self, key: jax.Array, local_batch: int) -> jnp.ndarray:
        """This device's rows of the global (batch, [k,] latent) N(0, I) draw of the reparameterization."""
        latent, k = self.cfg.model.latent_dim, self.samples
        shape = (self.global_batch, latent) if k == 1 else (self.global_batch, k, latent)
        eps = jax.random.normal(key, shape)
        if self.axis_name is None:
            return eps
        return jax.lax.dynamic_slice_in_dim(eps, jax.lax.axis_index(self.axis_name) * local_batch, local_batch)

    def loss(self, p, x: jnp.ndarray, eps: jnp.ndarray, beta: jax.Array) -> tuple[jax.Array, dict]:
        """The batch mean of the objective in nats per example, and its parts. x (N, H, W, C) in [0, 1];
        eps (N, L), or (N, k, L) with k = loss.iwae_k or loss.elbo_samples > 1."""
        V, c = self.nets["vae"], self.cfg.loss
        if self.samples == 1:
            decoded, mean, logvar = V.apply({"params": p}, x, train=True, eps=eps)
            return losses.negative_elbo(x, decoded, mean, logvar, c.likelihood, beta, c.gaussian_std)
        mean, logvar = V.apply({"params": p}, x, method=V.encode)
        z = mean[:, None] + jnp.exp(0.5 * logvar)[:, None] * eps  # (N, k, L)
        decoded = V.apply({"params": p}, z.reshape(-1, z.shape[-1]), method=V.decode)
        x_rep = jnp.broadcast_to(x[:, None], (*z.shape[:2], *x.shape[1:])).reshape(decoded.shape)
        rows = lambda a: a.reshape(-1, a.shape[-1])  # (N, k, L) -> (N k, L)
        log_w = losses.log_importance_weights(x_rep, decoded, rows(z), rows(eps), jnp.repeat(logvar, self.samples, 0),
                                              c.likelihood, c.gaussian_std).reshape(z.shape[:2])  # (N, k)
        kl = {"kl": jnp.mean(losses.gaussian_kl(mean, logvar))}  # closed form, logged only
        if self.elbo_samples > 1:
            elbo = jnp.mean(log_w, axis=-1)  # (N,): the k-sample Monte Carlo ELBO
            return -jnp.mean(elbo), {"neg_elbo": -jnp.mean(elbo), **kl}
        bound = losses.iwae_bound(log_w)  # (N,)
        return -jnp.mean(bound), {"iwae_bound": jnp.mean(bound), **kl}

    def update_step(self, params, stats, opt_state, batch_u8, step_key, state, hp) -> dict:
        """One update on batch_u8 (1, local_batch, H, W, C) uint8; metrics in nats per example."""
        x = self.real_examples(fold(step_key, keys.REAL), batch_u8[0])
        eps = self.noise(fold(step_key, keys.LATENT), x.shape[0])
        def grads(part, key):
            (loss, parts), grads = jax.value_and_grad(self.loss, has_aux=True)(params["vae"], *part, hp["beta"])
            return grads, (loss, parts)

        grads, (loss, parts) = self.accumulate(grads, (x, eps), step_key)
        self.update("vae", params, opt_state, grads, hp)
        return {"loss": loss, **parts, "lr": learning_rate(opt_state["vae"])}

    def sample_fn(self):
        V, bernoulli = self.nets["vae"], self.cfg.loss.likelihood == "bernoulli"

        def sample(state, z):
            decoded = V.apply({"params": state.params["vae"]}, z, method=V.decode)
            return jax.nn.sigmoid(decoded) if bernoulli else jnp.clip(decoded, 0, 1)

        return sample

    def encode_fn(self):
        V = self.nets["vae"]
        return lambda state, x: V.apply({"params": state.params["vae"]}, x, method=V.encode)[0]
