"""2x resampling of NHWC feature maps by the [1, 3, 3, 1] binomial filter (StyleGAN2's and R3GAN's
`upsample2d` / `downsample2d` with R3GAN's ResamplingFilter [1, 2, 1], which it widens to [1, 3, 3, 1]):
zeros beyond the borders, as upfirdn2d pads.

Separable along H and W, each 1-D pass a few shifted slices: upsampling gives sample 2i the weights
(1/4, 3/4) of inputs (i - 1, i) and sample 2i + 1 the weights (3/4, 1/4) of (i, i + 1); downsampling
gives output i (1, 3, 3, 1) / 8 of inputs 2i - 1 .. 2i + 2. Both preserve a constant away from the
borders."""

import jax.numpy as jnp


def _pad1(x: jnp.ndarray, axis: int) -> jnp.ndarray:
    pads = [(0, 0)] * x.ndim
    pads[axis] = (1, 1)
    return jnp.pad(x, pads)


def _take(x: jnp.ndarray, axis: int, start: int, stop: int | None, step: int = 1) -> jnp.ndarray:
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, stop, step)
    return x[tuple(index)]


def _upsample_axis(x: jnp.ndarray, axis: int) -> jnp.ndarray:
    n = x.shape[axis]
    xp = _pad1(x, axis)
    before, here, after = _take(xp, axis, 0, n), _take(xp, axis, 1, n + 1), _take(xp, axis, 2, None)
    even, odd = 0.25 * before + 0.75 * here, 0.75 * here + 0.25 * after
    y = jnp.stack([even, odd], axis=axis + 1)
    return y.reshape(*x.shape[:axis], 2 * n, *x.shape[axis + 1:])


def _downsample_axis(x: jnp.ndarray, axis: int) -> jnp.ndarray:
    half = x.shape[axis] // 2
    xp = _pad1(x, axis)  # xp[j] = x[j - 1]
    tap = lambda j: _take(xp, axis, j, j + 2 * half, 2)  # xp[2i + j] for i < half
    return (tap(0) + 3.0 * tap(1) + 3.0 * tap(2) + tap(3)) / 8.0


def upsample_2x(x: jnp.ndarray) -> jnp.ndarray:
    """(N, H, W, C) -> (N, 2H, 2W, C), bilinear-like interpolation by the [1, 3, 3, 1] filter (gain 4)."""
    return _upsample_axis(_upsample_axis(x, 1), 2)


def downsample_2x(x: jnp.ndarray) -> jnp.ndarray:
    """(N, H, W, C) -> (N, H/2, W/2, C), H and W even: low-pass by the [1, 3, 3, 1] filter, then every
    second sample."""
    return _downsample_axis(_downsample_axis(x, 1), 2)
