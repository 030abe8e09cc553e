"""Stride-1 convolutions through a small real DFT: the 'dft' lowering of `gan_jax.ops.conv`.

A stride-1 convolution is a pointwise product in the frequency domain. With the smallest circular
length P per spatial dim at which no tap wraps around into the data (for the DCGAN's 7x7 map,
5x5 kernel, 'SAME': P = 9), the layer becomes

    x (N, S, C) --DFT--> (B, 2, N, C) --B batched (2N, C) @ (C, 2O)--> --inverse DFT--> (N, I, O)

where S / I are the input / output positions, B = P_1 * ... * (P_last // 2 + 1) the frequency
bins kept (the input is real, so half the last dim suffices) and 2 stands for real/imaginary
parts. The transforms are small dense real matrices (no FFT op), so everything is a dot
product, and the gradients that autodiff derives are dot products of the same sizes. For the
7x7x256 -> 7x7x128 layer that is 7.9 M multiply-adds per image instead of 40.1 M for im2col
(1225 taps x channels, padding taps included) or 27.5 M for a direct convolution that skips the
padding taps: B = 45 bins x 4 real products against 49 outputs x 25 taps.

The transforms are exact up to fp32 rounding (cosines and sines of a 9-point DFT, no
ill-conditioned Winograd points), so outputs and gradients match `lax` to ~1e-6 of the output's
scale (tests/test_conv.py). Dense transforms cost O(S * B) per channel, which grows with the
square of the image, so `dft_cost_ratio` decides per layer whether this pays.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def _offsets(kernel_size, pads, dilation) -> list[list[int]]:
    # Tap t of output position i reads input position i + t * d - lo.
    return [[t * d - lo for t in range(k)] for k, (lo, _), d in zip(kernel_size, pads, dilation, strict=True)]


def _out_size(in_size, kernel_size, pads, dilation) -> list[int]:
    return [n + lo + hi - (k - 1) * d for n, k, (lo, hi), d in zip(in_size, kernel_size, pads, dilation, strict=True)]


def _circular_sizes(in_size, out_size, offsets) -> list[int]:
    # The smallest P at which reads before the data (offset < 0) wrap to positions >= in_size and
    # reads past the last output's window do not wrap at all, and inputs / outputs stay distinct.
    return [max(n, o, n - min(off), o + max(off)) for n, o, off in zip(in_size, out_size, offsets, strict=True)]


def _bins(sizes: Sequence[int]) -> list[tuple[int, ...]]:
    # All frequencies of every dim but the last, which keeps 0..P//2 (Hermitian symmetry).
    ranges = [range(p) for p in sizes[:-1]] + [range(sizes[-1] // 2 + 1)]
    return list(itertools.product(*ranges))


def _phases(positions: Sequence[Sequence[int]], bins, sizes) -> np.ndarray:
    """2*pi * sum_d position_d * bin_d / P_d, shape (B, len(positions)), float64."""
    pos = np.asarray(positions, np.float64).reshape(len(positions), len(sizes))
    freq = np.asarray(bins, np.float64) / np.asarray(sizes, np.float64)
    return 2 * np.pi * freq @ pos.T


@functools.lru_cache(maxsize=64)
def _dft_matrices(in_size, kernel_size, pads, dilation):
    """float32 (t_in (B, 2, S), t_kernel (B, 2, T), t_out (I, B, 2)) for one layer geometry."""
    offsets = _offsets(kernel_size, pads, dilation)
    out_size = _out_size(in_size, kernel_size, pads, dilation)
    sizes = _circular_sizes(in_size, out_size, offsets)
    bins = _bins(sizes)
    # X^[k] = sum_j x[j] e^{-i phase(j, k)};  W^[k] = sum_t w[t] e^{+i phase(offset_t, k)};
    # y[i] = (1 / prod P) sum_k c_k Re(X^[k] W^[k] e^{+i phase(i, k)}), c_k = 2 for the last dim's
    # bins whose mirror image was dropped, 1 for bin 0 (and P/2 when P is even).
    a_in = _phases(list(itertools.product(*map(range, in_size))), bins, sizes)
    a_w = _phases(list(itertools.product(*offsets)), bins, sizes)
    a_out = _phases(list(itertools.product(*map(range, out_size))), bins, sizes)
    last = np.asarray([k[-1] for k in bins])
    weight = (np.where((last == 0) | (2 * last == sizes[-1]), 1.0, 2.0) / np.prod(sizes))[:, None]
    t_in = np.stack([np.cos(a_in), -np.sin(a_in)], axis=1)
    t_kernel = np.stack([np.cos(a_w), np.sin(a_w)], axis=1)
    # Columns (bin, part) multiply (Re Y, Im Y): y = sum_k c_k (Re Y cos - Im Y sin).
    t_out = np.stack([weight * np.cos(a_out), -weight * np.sin(a_out)], axis=2).transpose(1, 0, 2)
    return tuple(np.asarray(m, np.float32) for m in (t_in, t_kernel, t_out))


def dft_cost_ratio(in_size, kernel_shape, pads, dilation, batch: int) -> float:
    """Multiply-adds of this lowering over those of im2col (all taps), for one layer geometry."""
    *kernel_size, c, o = kernel_shape
    out_size = _out_size(in_size, kernel_size, pads, dilation)
    sizes = _circular_sizes(in_size, out_size, _offsets(kernel_size, pads, dilation))
    b = len(_bins(sizes))
    s, i, t = np.prod(in_size), np.prod(out_size), np.prod(kernel_size)
    dft = 4 * b * c * o + 2 * b * s * c + 2 * b * i * o + 2 * b * t * c * o / max(batch, 1)
    return float(dft / max(i * t * c * o, 1))


@functools.partial(jax.jit, static_argnums=(2, 3))
def dft_conv(x: jax.Array, kernel: jax.Array, pads: tuple, dilation: tuple) -> jax.Array:
    """Stride-1 cross-correlation: x (N, *in, C), kernel (*k, C, O), explicit (lo, hi) pads
    (negative crops) -> (N, *out, O), as `lax.conv_general_dilated` with window strides 1."""
    n, *in_size, c = x.shape
    *kernel_size, _, o = kernel.shape
    out_size = _out_size(in_size, kernel_size, pads, dilation)
    t_in, t_kernel, t_out = _dft_matrices(tuple(in_size), tuple(kernel_size), pads, dilation)
    dtype = jnp.result_type(x, kernel)
    t_in, t_kernel, t_out = (jnp.asarray(m, dtype) for m in (t_in, t_kernel, t_out))
    b = t_in.shape[0]
    # Forward transforms: (B, 2, S) . (N, S, C) -> (B, 2, N, C); (B, 2, T) . (T, C, O) -> (B, C, 2, O).
    xf = lax.dot_general(t_in, x.reshape(n, -1, c), (((2,), (1,)), ((), ())))
    wf = lax.dot_general(t_kernel, kernel.reshape(-1, c, o), (((2,), (0,)), ((), ()))).transpose(0, 2, 1, 3)
    # Per bin: [Re X; Im X] (2N, C) @ [Re W, Im W] (C, 2O) -> z (B, 2, N, 2, O).
    z = lax.dot_general(xf, wf, (((3,), (1,)), ((0,), (0,))))
    y_re = z[:, 0, :, 0] - z[:, 1, :, 1]
    y_im = z[:, 0, :, 1] + z[:, 1, :, 0]
    yf = jnp.stack([y_re, y_im], axis=1).reshape(2 * b, n * o)  # rows (bin, part)
    y = jnp.dot(t_out.reshape(-1, 2 * b), yf)  # (I, N * O)
    return y.reshape(-1, n, o).transpose(1, 0, 2).reshape(n, *out_size, o)
