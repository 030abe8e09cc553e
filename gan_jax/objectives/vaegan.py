"""The VAE-GAN objective (Larsen et al. 2016, "Autoencoding beyond pixels using a learned similarity
metric", Algorithm 1): the VAE's decoder is also the GAN's generator, and its reconstruction error is
measured in a discriminator layer's feature space instead of pixels. From one forward of

    z ~ q(z | x) = N(mean(x), exp(logvar(x))),  x~ = G(z),  x_p = G(z_p), z_p ~ N(0, I)

three losses: L_prior = KL(q(z|x) || N(0, I)); L_llike = 1/2 ||D_l(x) - D_l(x~)||^2 (a unit-variance
Gaussian in D's layer l, summed over its features, the models' FEATURES); L_GAN, the adversarial loss
(loss.name) with real x against generated x~ and x_p. The paper's weighting: the encoder descends
beta * L_prior + L_llike (beta = loss.beta, 1 in the paper), the decoder gamma * L_llike + its GAN loss
(gamma = loss.feature_reconstruction_weight), D its GAN loss only; all three step from the same
parameters."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gan_jax import keys, losses
from gan_jax.errors import ConfigError
from gan_jax.objectives import register
from gan_jax.objectives.base import Hyperparameters, TrainState, global_normal, pmean
from gan_jax.objectives.gan import EMA, SPECTRAL_NORM, GanSteps
from gan_jax.ops import spectral_norm

fold = jax.random.fold_in


@register("vaegan", nets=("encoder", "generator", "discriminator"), needs_images=True)
class VaeganSteps(GanSteps):
    """Steps of a VAE-GAN: batch (1, local_batch, H, W, C) uint8 per update, model range [-1, 1]."""

    accumulates_gradients = False  # its update (below) takes one gradient on the whole batch
    HYPERPARAMETERS = {"beta": "loss.beta", "feature_reconstruction_weight": "loss.feature_reconstruction_weight"}

    def __init__(self, cfg: ml_collections.ConfigDict, nets: dict, example_shape: tuple[int, ...],
                 mixture: str | None = None, binarize: bool = False, axis_name: str | None = None):
        super().__init__(cfg, nets, example_shape, mixture, binarize, axis_name)
        for field, value, accepted in (("loss.penalties", cfg.loss.penalties, ""), ("model.pack", cfg.model.pack, 1),
                                       ("train.n_critic", cfg.train.n_critic, 1),
                                       ("data.ada_target", cfg.data.ada_target, 0.0),
                                       ("loss.zcr_discriminator", cfg.loss.zcr_discriminator, 0.0),
                                       ("loss.zcr_generator", cfg.loss.zcr_generator, 0.0)):
            if value != accepted:
                raise ConfigError(f"{field}={value!r} is not served by objective='vaegan' (one update of all "
                                  f"three networks from one forward); accepted: {accepted!r}")

    def hyperparameters(self) -> Hyperparameters:
        return {**super().hyperparameters(), "beta": np.float32(self.cfg.loss.beta),
                "feature_reconstruction_weight": np.float32(self.cfg.loss.feature_reconstruction_weight)}

    def init_state(self, seed: int) -> TrainState:
        state = super().init_state(seed)
        init_key = fold(jax.random.PRNGKey(seed), keys.INIT)
        x = jnp.zeros((2, *self.example_shape), jnp.float32)
        variables = self.nets["encoder"].init({"params": fold(init_key, 2)}, x, train=False)
        p = variables["params"]
        return state.replace(params={**state.params, "encoder": p},
                             batch_stats={**state.batch_stats, "encoder": variables.get("batch_stats", {})},
                             opt_state={**state.opt_state, "encoder": self.optimizers["encoder"].init(p)})

    def losses(self, p_e, p_g, p_d, stats, sn_vectors, real, eps, z_prior, key):
        """(KL, feature reconstruction, D's GAN loss, G's GAN loss), batch means in nats, and the aux
        (new BatchNorm statistics, real logits, generated logits)."""
        (mean, logvar), e_new = self.nets["encoder"].apply({"params": p_e, "batch_stats": stats["encoder"]}, real,
                                                           train=True, mutable=["batch_stats"])
        z = mean + jnp.exp(0.5 * logvar) * eps  # reparameterization
        reconstructed, g_stats = self.decode(p_g, stats["generator"], z)
        from_prior, g_stats = self.decode(p_g, g_stats, z_prior)
        real_logits, d_stats, real_features = self.discriminate(p_d, stats["discriminator"], sn_vectors, real,
                                                                fold(key, keys.D_REAL), features=True)
        recon_logits, d_stats, recon_features = self.discriminate(p_d, d_stats, sn_vectors, reconstructed,
                                                                  fold(key, keys.D_FAKE), features=True)
        prior_logits, d_stats = self.discriminate(p_d, d_stats, sn_vectors, from_prior, fold(key, keys.D_PRIOR))
        fake_logits = jnp.concatenate([recon_logits, prior_logits])
        d_loss, g_loss = self.loss_fn(real_logits, fake_logits)
        diff = (real_features - recon_features).reshape(real.shape[0], -1)
        feature_nll = jnp.mean(0.5 * jnp.sum(diff * diff, axis=-1))
        kl = jnp.mean(losses.gaussian_kl(mean, logvar))
        new_stats = {"encoder": e_new.get("batch_stats", {}), "generator": g_stats, "discriminator": d_stats}
        return jnp.stack([kl, feature_nll, d_loss, g_loss]), (new_stats, real_logits, fake_logits)

    def update_step(self, params, stats, opt_state, batch_u8, step_key, state, hp) -> dict:
        """One update of encoder, decoder and discriminator from the same parameters: batch_u8
        (1, local_batch, H, W, C) uint8; metrics the four losses (kl, feature_reconstruction, d_loss,
        g_loss) of the one forward that all three gradients come from."""
        sn_vectors = stats.pop(SPECTRAL_NORM, None)
        if sn_vectors is not None:
            sn_vectors = spectral_norm.power_iteration(params["discriminator"], sn_vectors)
        real = self.real_examples(fold(step_key, keys.REAL), batch_u8[0])
        latent, n = self.cfg.model.latent_dim, real.shape[0]
        eps = global_normal(fold(step_key, keys.LATENT), self.global_batch, latent, n, self.axis_name)
        z_prior = global_normal(fold(step_key, keys.PRIOR), self.global_batch, latent, n, self.axis_name)
        forward = lambda p_e, p_g, p_d: self.losses(p_e, p_g, p_d, stats, sn_vectors, real, eps, z_prior, step_key)
        values, pullback, (new_stats, real_logits, fake_logits) = jax.vjp(
            forward, params["encoder"], params["generator"], params["discriminator"], has_aux=True)
        kl, feature_nll, d_loss, g_loss = values
        one, zero = jnp.ones((), values.dtype), jnp.zeros((), values.dtype)
        weights = {"encoder": (0, jnp.stack([hp["beta"], one, zero, zero])),
                   "generator": (1, jnp.stack([zero, hp["feature_reconstruction_weight"], zero, one])),
                   "discriminator": (2, jnp.stack([zero, zero, one, zero]))}
        for name, (i, w) in weights.items():
            self.update(name, params, opt_state, pullback(w.astype(values.dtype))[i], hp)
        params["discriminator"] = self.constrain_critic(params["discriminator"])
        stats.update({k: pmean(v, self.axis_name) for k, v in new_stats.items()})
        if sn_vectors is not None:
            stats[SPECTRAL_NORM] = sn_vectors
        if self.ema:
            params[EMA], stats[EMA] = self.updated_ema(params, stats, state, step_key, hp["ema_decay"], batch_u8)
        return {"d_loss": d_loss, **self.output_metrics(real_logits, fake_logits), "g_loss": g_loss, "kl": kl,
                "feature_reconstruction": feature_nll, **self.learning_rates(opt_state)}

    def encode_fn(self):
        E = self.nets["encoder"]
        variables = lambda state: {"params": state.params["encoder"], "batch_stats": state.batch_stats["encoder"]}
        return lambda state, x: E.apply(variables(state), x, train=False)[0]
