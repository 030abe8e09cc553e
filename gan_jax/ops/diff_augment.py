"""Differentiable augmentation (DiffAugment, Zhao et al. 2020, "Differentiable Augmentation for
Data-Efficient GAN Training"), as in the authors' code (mit-han-lab/data-efficient-gans, DiffAugment_pytorch.py):
the same random transformations are applied to real and generated images before every D forward,
differentiably, so that G learns the data and not the augmentation (augmenting only the real images
would leak it into G).

Images are (N, H, W, C) in [-1, 1]. Each example draws its transformation from
fold_in(fold_in(key, transform index), example_ids[i]), so a batch split over devices draws the same.
A new transformation is one function `(x, key, example_ids) -> x` registered in AUGMENTATIONS."""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from gan_jax.errors import ConfigError

Augmentation = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
AUGMENTATIONS: dict[str, Augmentation] = {}


def register(name: str) -> Callable[[Augmentation], Augmentation]:
    def wrap(fn: Augmentation) -> Augmentation:
        AUGMENTATIONS[name] = fn
        return fn

    return wrap


def _uniform(key: jax.Array, example_ids: jax.Array, shape=()) -> jax.Array:
    """(N, *shape) uniforms in [0, 1), example i's from fold_in(key, example_ids[i])."""
    return jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(key, i), shape))(example_ids)


def _randint(key: jax.Array, example_ids: jax.Array, low: int, high: int, count: int) -> jax.Array:
    """(N, count) integers in [low, high), example i's from fold_in(key, example_ids[i])."""
    return jax.vmap(lambda i: jax.random.randint(jax.random.fold_in(key, i), (count,), low, high))(example_ids)


@register("color")
def color(x: jax.Array, key: jax.Array, example_ids: jax.Array) -> jax.Array:
    """Brightness (+ U[-0.5, 0.5)), saturation (x U[0, 2) around the pixel's channel mean) and contrast
    (x U[0.5, 1.5) around the image mean), each per example."""
    keys = [jax.random.fold_in(key, j) for j in range(3)]
    b = _uniform(keys[0], example_ids)[:, None, None, None]
    x = x + (b - 0.5)
    mean = x.mean(axis=3, keepdims=True)
    x = (x - mean) * (_uniform(keys[1], example_ids)[:, None, None, None] * 2) + mean
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return (x - mean) * (_uniform(keys[2], example_ids)[:, None, None, None] + 0.5) + mean


@register("translation")
def translation(x: jax.Array, key: jax.Array, example_ids: jax.Array, ratio: float = 0.125) -> jax.Array:
    """Shifts each image by up to ratio * size pixels in each direction (integers), filling with zeros."""
    _, h, w, _ = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    shifts = jnp.stack([_randint(jax.random.fold_in(key, 0), example_ids, -sh, sh + 1, 1)[:, 0],
                        _randint(jax.random.fold_in(key, 1), example_ids, -sw, sw + 1, 1)[:, 0]], axis=1)
    padded = jnp.pad(x, ((0, 0), (sh, sh), (sw, sw), (0, 0)))
    # Output pixel (i, j) reads input (i + dy, j + dx), i.e. padded (i + dy + sh, j + dx + sw).
    return jax.vmap(lambda img, s: jax.lax.dynamic_slice(img, (sh + s[0], sw + s[1], 0), x.shape[1:]))(padded, shifts)


@register("cutout")
def cutout(x: jax.Array, key: jax.Array, example_ids: jax.Array, ratio: float = 0.5) -> jax.Array:
    """Zeroes one square of side ratio * size per image, centred at a uniform position (clipped at the
    border)."""
    _, h, w, _ = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = _randint(jax.random.fold_in(key, 0), example_ids, 0, h + (1 - ch % 2), 1)
    cx = _randint(jax.random.fold_in(key, 1), example_ids, 0, w + (1 - cw % 2), 1)
    rows, cols = jnp.arange(h)[None, :], jnp.arange(w)[None, :]
    inside_y = (rows >= cy - ch // 2) & (rows < cy - ch // 2 + ch)  # (N, H)
    inside_x = (cols >= cx - cw // 2) & (cols < cx - cw // 2 + cw)  # (N, W)
    mask = ~(inside_y[:, :, None] & inside_x[:, None, :])
    return x * mask[..., None].astype(x.dtype)


def parse_policy(spec: str) -> tuple[str, ...]:
    """data.diff_augment ('translation,cutout,color' or '') -> the transformation names, in order."""
    names = tuple(n.strip() for n in spec.split(",") if n.strip())
    for n in names:
        if n not in AUGMENTATIONS:
            raise ConfigError(f"data.diff_augment={spec!r}: {n!r} is unknown; accepted: comma-separated names "
                              f"among {', '.join(sorted(AUGMENTATIONS))}")
    return names


def diff_augment(x: jax.Array, key: jax.Array, example_ids: jax.Array, policy: tuple[str, ...]) -> jax.Array:
    """x (N, H, W, C) with the policy's transformations applied in order, transformation j keyed by
    fold_in(key, j)."""
    for j, name in enumerate(policy):
        x = AUGMENTATIONS[name](x, jax.random.fold_in(key, j), example_ids)
    return x
