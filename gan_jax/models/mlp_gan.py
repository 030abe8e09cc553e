"""The GAN of Goodfellow et al. (2014): MLP generator and discriminator, optionally with maxout
discriminator layers; also the PacGAN 2D-ring networks (BatchNorm+ReLU generator, maxout critic).
With model.num_classes > 0 it is class-conditional (gan_jax/models/conditioning.py): G reads the
one-hot label appended to z (Mirza & Osindero 2014), D as model.discriminator_conditioning says (the
one-hot appended to the flattened input with 'concat')."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from gan_jax.models import FRACTION, NON_NEGATIVE, POSITIVE, Field, register, settings
from gan_jax.models.conditioning import DISCRIMINATOR_CONDITIONING_FIELD, concat_labels, discriminator_conditioning
from gan_jax.models.layers import ACTIVATIONS


def kernel_init(init_range: float) -> nn.initializers.Initializer:
    """Uniform(-r, r) weights (pylearn2's `irange`, Goodfellow et al. 2014's networks); r = 0: flax's default."""
    if not init_range:
        return nn.linear.default_kernel_init
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -init_range, init_range)


class Maxout(nn.Module):
    """Dense layer with `pieces` linear pieces per unit and the max over them: (N, D) -> (N, features)."""

    features: int
    pieces: int = 5
    init_range: float = 0.0

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        y = nn.Dense(self.features * self.pieces, kernel_init=kernel_init(self.init_range))(x)
        return y.reshape(*x.shape[:-1], self.features, self.pieces).max(-1)


class MLPGenerator(nn.Module):
    """z (N, latent_dim) -> samples (N, *output_shape); tanh output for images, linear for points."""

    output_shape: tuple[int, ...]
    width: int = 1200
    depth: int = 2
    activation: str = "relu"
    batch_norm: bool = False
    tanh_output: bool = True
    bn_axis_name: str | None = None
    init_range: float = 0.0
    unit_pixels: bool = False  # output 2 sigmoid(a) - 1: a sigmoid layer's pixels in [0, 1], mapped to [-1, 1]
    num_classes: int = 0  # > 0: the one-hot label (N,) appended to z

    @nn.compact
    def __call__(self, z: jnp.ndarray, labels: jnp.ndarray | None = None, train: bool = True) -> jnp.ndarray:
        h = concat_labels(z, labels, self.num_classes) if self.num_classes else z
        for _ in range(self.depth):
            h = nn.Dense(self.width, use_bias=not self.batch_norm, kernel_init=kernel_init(self.init_range))(h)
            if self.batch_norm:
                h = nn.BatchNorm(use_running_average=not train, momentum=0.9, axis_name=self.bn_axis_name)(h)
            h = ACTIVATIONS[self.activation](h)
        h = nn.Dense(math.prod(self.output_shape), kernel_init=kernel_init(self.init_range))(h)
        if self.tanh_output:
            h = 2.0 * nn.sigmoid(h) - 1.0 if self.unit_pixels else jnp.tanh(h)
        return h.reshape(z.shape[0], *self.output_shape)


class MLPDiscriminator(nn.Module):
    """x (N, *shape) (and labels (N,)) -> logits (N,). Hidden layers are LeakyReLU(0.2) or maxout units."""

    width: int = 240
    depth: int = 2
    maxout_pieces: int = 0  # 0: LeakyReLU layers; k > 0: maxout layers with k pieces
    dropout_rate: float = 0.0
    axis_name: str | None = None  # pmap axis, for per-example dropout masks
    input_dropout_rate: float = 0.0
    init_range: float = 0.0
    unit_pixels: bool = False  # reads (x + 1) / 2: pixels in [0, 1]
    num_classes: int = 0
    conditioning: str = "concat"  # with num_classes > 0: conditioning.DISCRIMINATOR_CONDITIONINGS

    @nn.compact
    def __call__(self, x: jnp.ndarray, labels: jnp.ndarray | None = None, train: bool = True) -> jnp.ndarray:
        from gan_jax.models.dcgan import FEATURES, ExampleDropout

        conditioning = discriminator_conditioning(self.conditioning, self.num_classes)
        h = x.reshape(x.shape[0], -1)
        if self.unit_pixels:
            h = (h + 1.0) / 2.0
        if self.input_dropout_rate:
            h = ExampleDropout(self.input_dropout_rate, self.axis_name)(h, deterministic=not train)
        h = conditioning.inputs(h, labels, self.num_classes)
        for _ in range(self.depth):
            if self.maxout_pieces:
                h = Maxout(self.width, self.maxout_pieces, self.init_range)(h)
            else:
                h = nn.leaky_relu(nn.Dense(self.width, kernel_init=kernel_init(self.init_range))(h), 0.2)
            if self.dropout_rate:
                h = ExampleDropout(self.dropout_rate, self.axis_name)(h, deterministic=not train)
        self.sow("intermediates", FEATURES, h)  # the last hidden layer, for objectives that read D's features
        return conditioning.head(h, labels, self.num_classes, kernel_init(self.init_range))


@register("mlp_gan", {
    "generator_width": Field(1200, POSITIVE),
    "generator_depth": Field(2, NON_NEGATIVE),  # hidden layers
    "generator_activation": Field("relu", choices=tuple(ACTIVATIONS)),
    "generator_batch_norm": Field(False),
    "discriminator_width": Field(240, POSITIVE),
    "discriminator_depth": Field(2, NON_NEGATIVE),
    "maxout_pieces": Field(0, NON_NEGATIVE),  # 0: leaky-ReLU units (no maxout)
    "dropout_rate": Field(0.0, FRACTION),  # after each of D's hidden layers
    "input_dropout_rate": Field(0.0, FRACTION),  # on D's input
    # Uniform(-r, r) initial weights (pylearn2's irange); 0: flax's default (LeCun normal)
    "generator_init_range": Field(0.0, NON_NEGATIVE),
    "discriminator_init_range": Field(0.0, NON_NEGATIVE),
    # The networks compute on pixels in [0, 1] (Goodfellow et al.'s sigmoid G, D on [0, 1] inputs), exactly,
    # while the data and samples stay in [-1, 1]: G outputs 2 sigmoid(a) - 1, D reads (x + 1) / 2.
    "unit_pixels": Field(False),
    # with model.num_classes > 0, how D reads the label (conditioning.DISCRIMINATOR_CONDITIONINGS)
    "discriminator_conditioning": DISCRIMINATOR_CONDITIONING_FIELD,
}, num_classes=True)
def build_mlp_gan(cfg: ml_collections.ConfigDict, example_shape: tuple[int, ...]) -> dict[str, nn.Module]:
    images = len(example_shape) == 3
    s = settings(cfg)
    generator = MLPGenerator(
        output_shape=example_shape, width=s["generator_width"], depth=s["generator_depth"],
        activation=s["generator_activation"], batch_norm=s["generator_batch_norm"],
        tanh_output=images, bn_axis_name=cfg.get("axis_name", None), init_range=s["generator_init_range"],
        unit_pixels=s["unit_pixels"], num_classes=s["num_classes"])
    discriminator = MLPDiscriminator(
        width=s["discriminator_width"], depth=s["discriminator_depth"],
        maxout_pieces=s["maxout_pieces"], dropout_rate=s["dropout_rate"], axis_name=cfg.get("axis_name", None),
        input_dropout_rate=s["input_dropout_rate"], init_range=s["discriminator_init_range"],
        unit_pixels=s["unit_pixels"], num_classes=s["num_classes"], conditioning=s["discriminator_conditioning"])
    return {"generator": generator, "discriminator": discriminator}
