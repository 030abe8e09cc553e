"""Losses, registered by name. A GAN loss is one function of the discriminator's logits on a real
and a fake batch that returns (discriminator_loss, generator_loss); the train step differentiates
the first w.r.t. D and the second w.r.t. G. A new loss is one decorated function here:

    @register_gan_loss("softplus_hinge")
    def softplus_hinge(real_logits, fake_logits):
        return jnp.mean(softplus(1 - real_logits)) + jnp.mean(softplus(1 + fake_logits)), -jnp.mean(fake_logits)

"Logits" are D's raw, unbounded output, whatever the loss: no loss expects a sigmoid inside D. The
cross-entropy losses use softplus forms, so every loss stays finite at logits of +-100:
-log D(x) = softplus(-l) and -log(1 - D(x)) = softplus(l), where D(x) = sigmoid(l)."""

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
from jax.nn import relu, softplus

from gan_jax.errors import ConfigError

if TYPE_CHECKING:
    import ml_collections

GanLoss = Callable[[jnp.ndarray, jnp.ndarray], tuple[jnp.ndarray, jnp.ndarray]]
GAN_LOSSES: dict[str, GanLoss] = {}


# Losses whose value couples the examples of a batch (means over the other batch inside the loss):
# under pmap each device sees only its share of the batch, so these would change with the device count.
BATCH_COUPLED: set[str] = set()
# Losses whose D output is a logit of the probability that the input is real (sigmoid(l) = D(x)): the
# step logs mean D(x) and D(G(z)) as probabilities (d_real, d_fake) for these, raw outputs otherwise.
PROBABILISTIC: set[str] = set()
# Losses of pairs (real_logits[i], fake_logits[i]): the two batches must have the same size.
PAIRED: set[str] = set()


def register_gan_loss(name: str, batch_coupled: bool = False, probabilistic: bool = False,
                      paired: bool = False) -> Callable[[GanLoss], GanLoss]:
    def wrap(fn: GanLoss) -> GanLoss:
        GAN_LOSSES[name] = fn
        for flag, names in ((batch_coupled, BATCH_COUPLED), (probabilistic, PROBABILISTIC), (paired, PAIRED)):
            if flag:
                names.add(name)
        return fn

    return wrap


def get_gan_loss(name: str) -> GanLoss:
    if name not in GAN_LOSSES:
        raise ConfigError(f"loss.name={name!r} is unknown for a GAN; accepted: {', '.join(sorted(GAN_LOSSES))}")
    return GAN_LOSSES[name]


@register_gan_loss("minimax", probabilistic=True)
def minimax(real_logits: jnp.ndarray, fake_logits: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Goodfellow et al.'s value function. real_logits (N,), fake_logits (M,) -> scalars in nats:
    L_D = -E log D(x) - E log(1 - D(G(z))),  L_G = E log(1 - D(G(z)))."""
    d_loss = jnp.mean(softplus(-real_logits)) + jnp.mean(softplus(fake_logits))
    return d_loss, -jnp.mean(softplus(fake_logits))


@register_gan_loss("non_saturating", probabilistic=True)
def non_saturating(real_logits: jnp.ndarray, fake_logits: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Same L_D as minimax; L_G = -E log D(G(z)), whose gradient does not vanish when D wins."""
    d_loss = jnp.mean(softplus(-real_logits)) + jnp.mean(softplus(fake_logits))
    return d_loss, jnp.mean(softplus(-fake_logits))


@register_gan_loss("least_squares")
def least_squares(real_logits: jnp.ndarray, fake_logits: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """LSGAN, Mao et al., "Least Squares Generative Adversarial Networks", ICCV 2017, with the 0-1
    coding a = 0 (fake), b = 1 (real), c = 1 (what G wants D to say), D the raw logit, no sigmoid.
    real_logits (N,), fake_logits (M,) -> scalars in squared logit units:
    L_D = 1/2 E[(D(x) - 1)^2] + 1/2 E[D(G(z))^2],  L_G = 1/2 E[(D(G(z)) - 1)^2].
    The optimal D is p_data / (p_data + p_g), 1/2 where the densities agree."""
    d_loss = 0.5 * jnp.mean(jnp.square(real_logits - 1)) + 0.5 * jnp.mean(jnp.square(fake_logits))
    return d_loss, 0.5 * jnp.mean(jnp.square(fake_logits - 1))


@register_gan_loss("wasserstein")
def wasserstein(real_logits: jnp.ndarray, fake_logits: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """WGAN critic losses, Arjovsky et al., "Wasserstein GAN", ICML 2017 (Algorithm 1).
    real_logits (N,), fake_logits (M,) -> scalars in critic-output units:
    L_D = E[D(G(z))] - E[D(x)],  L_G = -E[D(G(z))].
    Alone this is not a WGAN: -L_D estimates the Wasserstein-1 distance only for a 1-Lipschitz
    critic, which weight clipping (Arjovsky et al.) or a gradient penalty (Gulrajani et al., 2017)
    enforces. Without either, D's logits grow without bound: set loss.clip (e.g. 0.01, applied after
    each D update by the step)."""
    return jnp.mean(fake_logits) - jnp.mean(real_logits), -jnp.mean(fake_logits)


@register_gan_loss("hinge")
def hinge(real_logits: jnp.ndarray, fake_logits: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Hinge loss: Lim & Ye, "Geometric GAN", 2017; Miyato et al., "Spectral Normalization for
    Generative Adversarial Networks", ICLR 2018 (there written as values to maximize).
    real_logits (N,), fake_logits (M,) -> scalars in logit units:
    L_D = E[relu(1 - D(x))] + E[relu(1 + D(G(z)))],  L_G = -E[D(G(z))].
    D gets no gradient from a real logit >= 1 or a fake logit <= -1."""
    d_loss = jnp.mean(relu(1 - real_logits)) + jnp.mean(relu(1 + fake_logits))
    return d_loss, -jnp.mean(fake_logits)


def _relativistic_average(real_logits: jnp.ndarray, fake_logits: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """C_r = D(x) - E[D(G(z))] (N,) and C_f = D(G(z)) - E[D(x)] (M,). The means are over this
    call's batch (one device's shard under data parallelism) and are differentiated through."""
    return real_logits - jnp.mean(fake_logits), fake_logits - jnp.mean(real_logits)


@register_gan_loss("relativistic_average", batch_coupled=True)
def relativistic_average(real_logits: jnp.ndarray, fake_logits: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """RaSGAN, Jolicoeur-Martineau, "The relativistic discriminator: a key element missing from
    standard GAN", 2018 (ICLR 2019): D~(x) = sigmoid(C_r) is the probability that x is
    more realistic than the average fake, with C_r = D(x) - E[D(G(z))], C_f = D(G(z)) - E[D(x)].
    real_logits (N,), fake_logits (M,) -> scalars in nats:
    L_D = -E log sigmoid(C_r) - E log(1 - sigmoid(C_f)) = E softplus(-C_r) + E softplus(C_f),
    L_G = -E log sigmoid(C_f) - E log(1 - sigmoid(C_r)) = E softplus(-C_f) + E softplus(C_r):
    L_G is L_D with real and fake swapped, so G also gets gradient through the real logits' term."""
    c_r, c_f = _relativistic_average(real_logits, fake_logits)
    d_loss = jnp.mean(softplus(-c_r)) + jnp.mean(softplus(c_f))
    return d_loss, jnp.mean(softplus(-c_f)) + jnp.mean(softplus(c_r))


@register_gan_loss("relativistic_average_hinge", batch_coupled=True)
def relativistic_average_hinge(real_logits: jnp.ndarray, fake_logits: jnp.ndarray
                               ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """RaHingeGAN, Jolicoeur-Martineau 2018 (as relativistic_average):
    the hinge loss on the relativistic logits C_r = D(x) - E[D(G(z))], C_f = D(G(z)) - E[D(x)].
    real_logits (N,), fake_logits (M,) -> scalars in logit units:
    L_D = E relu(1 - C_r) + E relu(1 + C_f),  L_G = E relu(1 - C_f) + E relu(1 + C_r)."""
    c_r, c_f = _relativistic_average(real_logits, fake_logits)
    d_loss = jnp.mean(relu(1 - c_r)) + jnp.mean(relu(1 + c_f))
    return d_loss, jnp.mean(relu(1 - c_f)) + jnp.mean(relu(1 + c_r))


@register_gan_loss("relativistic_pairing", paired=True)
def relativistic_pairing(real_logits: jnp.ndarray, fake_logits: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """RpGAN: the relativistic standard GAN of Jolicoeur-Martineau 2018 on paired samples (Sun et al.
    2020's name), R3GAN's loss (Huang et al. 2025, eq. 2; brownvc/R3GAN R3GAN/Trainer.py): real x_i
    and generated G(z_i) are paired by index. real_logits (N,), fake_logits (N,) -> scalars in nats:
    L_D = E_i softplus(D(G(z_i)) - D(x_i)) = -E log sigmoid(D(x_i) - D(G(z_i))),
    L_G = E_i softplus(D(x_i) - D(G(z_i))).
    Each term couples one pair only, so a batch split over devices gives the same pairs."""
    if real_logits.shape != fake_logits.shape:
        raise ValueError(f"loss 'relativistic_pairing' pairs real and generated logits one to one; got shapes "
                         f"{real_logits.shape} and {fake_logits.shape}")
    difference = fake_logits - real_logits
    return jnp.mean(softplus(difference)), jnp.mean(softplus(-difference))


# --- top-k generator updates -------------------------------------------------------------------

def top_k_fraction(step: jax.Array, decay: float, minimum: float, every: int) -> jax.Array:
    """The fraction of generated samples whose loss G trains on at train step `step`: max(decay^(step //
    every), minimum), as the authors' code anneals it (decay 0.99 per epoch down to 0.5)."""
    return jnp.maximum(jnp.power(jnp.float32(decay), (step // every).astype(jnp.float32)), jnp.float32(minimum))


def with_top_k_fraction(train: "ml_collections.ConfigDict", hp: dict, metrics: dict, step: jax.Array
                        ) -> tuple[dict, dict]:
    """(hp, metrics) with 'top_k_fraction' at `step` added to both where train.top_k is on; else unchanged."""
    if not train.top_k:
        return hp, metrics
    fraction = top_k_fraction(step, train.top_k_decay, train.top_k_min, train.top_k_every)
    return {**hp, "top_k_fraction": fraction}, {**metrics, "top_k_fraction": fraction}


def top_k_generator_loss(loss_fn: GanLoss, real_logits: jnp.ndarray, fake_logits: jnp.ndarray,
                         fraction: jax.Array) -> jnp.ndarray:
    """Top-k training (Sinha et al., "Top-k Training of GANs: Improving GAN Performance by Throwing Away
    Bad Samples", NeurIPS 2020): G's loss over the k = max(floor(fraction * M), 1) generated samples
    that D scores highest, the others dropped from its gradient. For a loss whose G term is a mean of
    per-example terms (any loss outside BATCH_COUPLED and PAIRED): the mean of those terms over the k.
    real_logits (N,), fake_logits (M,), fraction a scalar in (0, 1] (traced) -> scalar."""
    per_example = jax.vmap(lambda f: loss_fn(real_logits, f[None])[1])(fake_logits)
    k = jnp.maximum(jnp.floor(fraction * fake_logits.shape[0]), 1.0)
    ranks = jnp.argsort(jnp.argsort(-fake_logits))  # 0 for the sample D scores highest
    return jnp.sum(jnp.where(ranks < k, per_example, 0.0)) / k


def check_top_k(train: "ml_collections.ConfigDict", loss_name: str, axis_name: str | None) -> None:
    """Refuses train.top_k where it is undefined: a loss whose G term couples the batch, or under pmap
    (k would be of one device's share, and change with the device count)."""
    if not train.top_k:
        return
    if loss_name in BATCH_COUPLED | PAIRED:
        raise ConfigError(f"train.top_k=True needs G's loss as a mean over generated samples, and loss.name="
                          f"{loss_name!r} couples them; accepted: one of "
                          + ", ".join(sorted(set(GAN_LOSSES) - BATCH_COUPLED - PAIRED)))
    if axis_name is not None:
        raise ConfigError("train.top_k=True ranks the whole generated batch, and under parallel.mode='pmap' a "
                          "device sees its share; accepted: parallel.mode='jit'")


# --- VAE -------------------------------------------------------------------------------------

Likelihood = Callable[..., jnp.ndarray]
LIKELIHOODS: dict[str, Likelihood] = {}


def register_likelihood(name: str) -> Callable[[Likelihood], Likelihood]:
    def wrap(fn: Likelihood) -> Likelihood:
        LIKELIHOODS[name] = fn
        return fn

    return wrap


@register_likelihood("bernoulli")
def bernoulli_nll(x: jnp.ndarray, logits: jnp.ndarray, **unused) -> jnp.ndarray:
    """-log p(x | logits) summed over pixels: x in [0, 1] (N, ...), logits (N, ...) -> (N,) nats."""
    nll = softplus(logits) - x * logits  # = -[x log sigmoid(l) + (1 - x) log(1 - sigmoid(l))]
    return nll.reshape(x.shape[0], -1).sum(-1)


@register_likelihood("gaussian")
def gaussian_nll(x: jnp.ndarray, mean: jnp.ndarray, std: float = 0.1, **unused) -> jnp.ndarray:
    """-log N(x; mean, std^2 I) summed over pixels: (N, ...) -> (N,) nats (a density, so it can be < 0)."""
    z = (x - mean) / std
    nll = 0.5 * z * z + jnp.log(std) + 0.5 * jnp.log(2 * jnp.pi)
    return nll.reshape(x.shape[0], -1).sum(-1)


def get_likelihood(name: str) -> Likelihood:
    if name not in LIKELIHOODS:
        raise ConfigError(f"loss.likelihood={name!r} is unknown; accepted: {', '.join(sorted(LIKELIHOODS))}")
    return LIKELIHOODS[name]


def gaussian_kl(mean: jnp.ndarray, logvar: jnp.ndarray) -> jnp.ndarray:
    """KL(N(mean, exp(logvar)) || N(0, I)) in closed form: (N, L) -> (N,) nats."""
    return 0.5 * jnp.sum(jnp.exp(logvar) + mean * mean - 1.0 - logvar, axis=-1)


def negative_elbo(x: jnp.ndarray, decoded: jnp.ndarray, mean: jnp.ndarray, logvar: jnp.ndarray,
                  likelihood: str = "bernoulli", beta: float = 1.0, std: float = 0.1
                  ) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """Mean over the batch of reconstruction NLL + beta * KL (beta = 1: the VAE's negative ELBO,
    in nats per example). Returns the loss and its parts."""
    reconstruction = get_likelihood(likelihood)(x, decoded, std=std)
    kl = gaussian_kl(mean, logvar)
    loss = jnp.mean(reconstruction + beta * kl)
    return loss, {"reconstruction": jnp.mean(reconstruction), "kl": jnp.mean(kl),
                  "neg_elbo": jnp.mean(reconstruction + kl)}


_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def log_importance_weights(x: jnp.ndarray, decoded: jnp.ndarray, z: jnp.ndarray, eps: jnp.ndarray,
                           logvar: jnp.ndarray, likelihood: str = "bernoulli", std: float = 0.1) -> jnp.ndarray:
    """log p(x | z) + log N(z; 0, I) - log q(z | x) per row, nats: x and decoded (M, ...), z = mean +
    exp(logvar / 2) * eps, eps and logvar (M, L) -> (M,). log q(z | x) = log N(eps; 0, I) - logvar / 2."""
    log_px_z = -get_likelihood(likelihood)(x, decoded, std=std)
    log_pz = jnp.sum(-0.5 * z * z - _HALF_LOG_2PI, axis=-1)
    log_qz = jnp.sum(-0.5 * eps * eps - 0.5 * logvar - _HALF_LOG_2PI, axis=-1)
    return log_px_z + log_pz - log_qz


def iwae_bound(log_weights: jnp.ndarray) -> jnp.ndarray:
    """The importance-weighted bound log (1/k) sum_i w_i over the last axis (N, k) -> (N,), stable."""
    k = log_weights.shape[-1]
    return jax.nn.logsumexp(log_weights, axis=-1) - math.log(k)
