"""Losses, registered by name. A GAN loss is one function of the discriminator's logits on a real
and a fake batch that returns (discriminator_loss, generator_loss); the train step differentiates
the first w.r.t. D and the second w.r.t. G. A new loss is one decorated function here:

    @register_gan_loss("hinge")
    def hinge(real_logits, fake_logits):
        return jnp.mean(nn.relu(1 - real_logits)) + jnp.mean(nn.relu(1 + fake_logits)), -jnp.mean(fake_logits)

All GAN losses work on logits with softplus forms, so they stay finite at logits of +-100:
-log D(x) = softplus(-l) and -log(1 - D(x)) = softplus(l), where D(x) = sigmoid(l)."""

from collections.abc import Callable

import jax.numpy as jnp
from jax.nn import softplus

from gan_jax.errors import ConfigError

GanLoss = Callable[[jnp.ndarray, jnp.ndarray], tuple[jnp.ndarray, jnp.ndarray]]
GAN_LOSSES: dict[str, GanLoss] = {}


def register_gan_loss(name: str) -> Callable[[GanLoss], GanLoss]:
    def wrap(fn: GanLoss) -> GanLoss:
        GAN_LOSSES[name] = fn
        return fn

    return wrap


def get_gan_loss(name: str) -> GanLoss:
    if name not in GAN_LOSSES:
        raise ConfigError(f"loss.name={name!r} is unknown for a GAN; accepted: {', '.join(sorted(GAN_LOSSES))}")
    return GAN_LOSSES[name]


@register_gan_loss("minimax")
def minimax(real_logits: jnp.ndarray, fake_logits: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Goodfellow et al.'s value function. real_logits (N,), fake_logits (M,) -> scalars in nats:
    L_D = -E log D(x) - E log(1 - D(G(z))),  L_G = E log(1 - D(G(z)))."""
    d_loss = jnp.mean(softplus(-real_logits)) + jnp.mean(softplus(fake_logits))
    return d_loss, -jnp.mean(softplus(fake_logits))


@register_gan_loss("non_saturating")
def non_saturating(real_logits: jnp.ndarray, fake_logits: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Same L_D as minimax; L_G = -E log D(G(z)), whose gradient does not vanish when D wins."""
    d_loss = jnp.mean(softplus(-real_logits)) + jnp.mean(softplus(fake_logits))
    return d_loss, jnp.mean(softplus(-fake_logits))


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
