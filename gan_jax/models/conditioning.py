"""Class conditioning, one module per mechanism, for any backbone to compose:

- `ClassBatchNorm`: conditional BatchNorm (de Vries et al. 2017; Miyato & Koyama 2018's generator):
  BatchNorm without its own affine, then a gain and a bias looked up per class.
- `ConditionedBatchNorm`: BigGAN's (Brock et al. 2019): gain 1 + W_g c and bias W_b c from a
  conditioning vector c (a shared class embedding concatenated with a chunk of z).
- `concat_labels`: Mirza & Osindero (2014): a one-hot label appended to a vector, or to an image as
  constant channels.
- `ProjectionHead`: the projection discriminator (Miyato & Koyama 2018): logit = psi(phi) + <E y, phi>.
- `AuxiliaryClassifier`: AC-GAN's class head on D's features (Odena et al. 2017), sown as CLASS_LOGITS
  so that D's output stays the adversarial logit (N,).

How a discriminator reads the label is chosen by name (`model.discriminator_conditioning`, registered
in DISCRIMINATOR_CONDITIONINGS: 'concat', 'projection', 'auxiliary'); a model calls the chosen one's
`inputs` before its first layer and its `head` after its last hidden layer, and with num_classes = 0
gets UNCONDITIONAL, which is the plain linear head in D's own scope (the unconditional D, unchanged).

Labels are int32 (N,) in [0, num_classes)."""

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax.models import Field

CLASS_LOGITS = "class_logits"  # the 'intermediates' entry an AuxiliaryClassifier sows: (N, num_classes)


def _per_example(v: jnp.ndarray, like: jnp.ndarray) -> jnp.ndarray:
    """(N, F) -> (N, 1, ..., 1, F), broadcastable against `like` (N, ..., F)."""
    return v.reshape(v.shape[0], *(1,) * (like.ndim - 2), v.shape[-1])


class ClassBatchNorm(nn.Module):
    """x (N, ..., F), labels (N,) -> gain[y] * BN(x) + bias[y], BN over every axis but the last
    (batch statistics in training, running averages otherwise); gains start at 1, biases at 0."""

    num_classes: int
    momentum: float = 0.9
    epsilon: float = 1e-5
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jnp.ndarray, labels: jnp.ndarray, train: bool = True) -> jnp.ndarray:
        h = nn.BatchNorm(use_running_average=not train, momentum=self.momentum, epsilon=self.epsilon,
                         use_scale=False, use_bias=False, axis_name=self.axis_name)(x)
        features = x.shape[-1]
        gain = nn.Embed(self.num_classes, features, embedding_init=nn.initializers.ones, name="gain")(labels)
        bias = nn.Embed(self.num_classes, features, embedding_init=nn.initializers.zeros, name="bias")(labels)
        return h * _per_example(gain, x) + _per_example(bias, x)


class ConditionedBatchNorm(nn.Module):
    """x (N, ..., F), c (N, D) -> (1 + W_g c) * BN(x) + W_b c (bias-free linear maps, BigGAN's ccbn)."""

    momentum: float = 0.9
    epsilon: float = 1e-5
    axis_name: str | None = None
    kernel_init: nn.initializers.Initializer = nn.initializers.orthogonal()

    @nn.compact
    def __call__(self, x: jnp.ndarray, c: jnp.ndarray, train: bool = True) -> jnp.ndarray:
        h = nn.BatchNorm(use_running_average=not train, momentum=self.momentum, epsilon=self.epsilon,
                         use_scale=False, use_bias=False, axis_name=self.axis_name)(x)
        features = x.shape[-1]
        gain = 1.0 + nn.Dense(features, use_bias=False, kernel_init=self.kernel_init, name="gain")(c)
        bias = nn.Dense(features, use_bias=False, kernel_init=self.kernel_init, name="bias")(c)
        return h * _per_example(gain, x) + _per_example(bias, x)


def concat_labels(x: jnp.ndarray, labels: jnp.ndarray, num_classes: int) -> jnp.ndarray:
    """x (N, D) -> (N, D + K), or images (N, H, W, C) -> (N, H, W, C + K): the one-hot label (K =
    num_classes) appended along the last axis, constant over an image's pixels."""
    one_hot = jax.nn.one_hot(labels, num_classes, dtype=x.dtype)
    return jnp.concatenate([x, jnp.broadcast_to(_per_example(one_hot, x), (*x.shape[:-1], num_classes))], -1)


class ProjectionHead(nn.Module):
    """D's last layer on features phi (N, F): logits (N,) = Dense(1)(phi) + sum(E[y] * phi) with a
    class embedding E (num_classes, F); num_classes = 0 leaves the plain linear head."""

    num_classes: int = 0
    kernel_init: nn.initializers.Initializer = nn.linear.default_kernel_init
    embedding_init: nn.initializers.Initializer = nn.initializers.xavier_uniform()  # mimicry's, as SNGAN's code

    @nn.compact
    def __call__(self, phi: jnp.ndarray, labels: jnp.ndarray | None = None) -> jnp.ndarray:
        logits = nn.Dense(1, kernel_init=self.kernel_init)(phi)[:, 0]
        if self.num_classes:
            embedded = nn.Embed(self.num_classes, phi.shape[-1], embedding_init=self.embedding_init,
                                name="class_embedding")(labels)
            logits = logits + jnp.sum(embedded * phi, axis=-1)
        return logits


class AuxiliaryClassifier(nn.Module):
    """AC-GAN's class head: features phi (N, F) -> class logits (N, num_classes), also sown into
    'intermediates' as CLASS_LOGITS for the objective's class loss."""

    num_classes: int

    @nn.compact
    def __call__(self, phi: jnp.ndarray) -> jnp.ndarray:
        class_logits = nn.Dense(self.num_classes, name="classes")(phi)
        self.sow("intermediates", CLASS_LOGITS, class_logits)
        return class_logits


# --- how a discriminator reads the label ---------------------------------------------------------
def unchanged_inputs(x: jnp.ndarray, labels: jnp.ndarray | None, num_classes: int) -> jnp.ndarray:
    return x


def linear_head(phi: jnp.ndarray, labels: jnp.ndarray | None, num_classes: int,
                kernel_init: nn.initializers.Initializer = nn.linear.default_kernel_init) -> jnp.ndarray:
    """The unconditional head: features phi (N, F) -> logits (N,) = Dense(1)(phi), in the caller's scope."""
    return nn.Dense(1, kernel_init=kernel_init)(phi)[:, 0]


def projection_head(phi: jnp.ndarray, labels: jnp.ndarray, num_classes: int,
                    kernel_init: nn.initializers.Initializer = nn.linear.default_kernel_init) -> jnp.ndarray:
    return ProjectionHead(num_classes, kernel_init=kernel_init)(phi, labels)


def auxiliary_head(phi: jnp.ndarray, labels: jnp.ndarray | None, num_classes: int,
                   kernel_init: nn.initializers.Initializer = nn.linear.default_kernel_init) -> jnp.ndarray:
    """AC-GAN: the linear head's logits; the class logits are sown (CLASS_LOGITS). D does not read the label."""
    logits = linear_head(phi, labels, num_classes, kernel_init)
    AuxiliaryClassifier(num_classes)(phi)
    return logits


@dataclasses.dataclass(frozen=True)
class DiscriminatorConditioning:
    """How a discriminator reads the label, called inside its compact method (the layers they create
    are D's, named in its scope): `inputs(x, labels, num_classes)` on what its first layer takes (an
    image (N, H, W, C) or a vector (N, D)), `head(phi, labels, num_classes, kernel_init)` on its last
    hidden features phi (N, F) -> the adversarial logits (N,)."""

    inputs: Callable[[jnp.ndarray, jnp.ndarray | None, int], jnp.ndarray]
    head: Callable[..., jnp.ndarray]


UNCONDITIONAL = DiscriminatorConditioning(unchanged_inputs, linear_head)
# model.discriminator_conditioning: name -> the mechanism, with model.num_classes > 0.
DISCRIMINATOR_CONDITIONINGS: dict[str, DiscriminatorConditioning] = {
    "concat": DiscriminatorConditioning(concat_labels, linear_head),  # Mirza & Osindero 2014
    "projection": DiscriminatorConditioning(unchanged_inputs, projection_head),  # Miyato & Koyama 2018
    "auxiliary": DiscriminatorConditioning(unchanged_inputs, auxiliary_head),  # Odena et al. 2017 (objective 'acgan')
}
# The model field, declared alike by every model that offers the choice (register() checks that they agree).
DISCRIMINATOR_CONDITIONING_FIELD = Field("concat", choices=tuple(DISCRIMINATOR_CONDITIONINGS))


def discriminator_conditioning(name: str, num_classes: int) -> DiscriminatorConditioning:
    """The mechanism `name` (DISCRIMINATOR_CONDITIONINGS) for a conditional D, UNCONDITIONAL for num_classes = 0."""
    return DISCRIMINATOR_CONDITIONINGS[name] if num_classes else UNCONDITIONAL
