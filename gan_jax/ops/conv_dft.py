"""Convolutions through a small real DFT: the 'dft' lowering of `gan_jax.ops.conv`.

A stride-1 convolution is a pointwise product in the frequency domain. With the smallest circular
length P per spatial dim at which no tap wraps around into the data (for the DCGAN's 7x7 map,
5x5 kernel, 'SAME': P = 9), the layer becomes

    x (S, N*C) --DFT--> 3 x (B, N, C) --per bin, 3 products (N, C) @ (C, O)--> --inverse DFT--> (I, N*O)

where S / I are the input / output positions and B the frequency bins kept (the input is real,
so one of each conjugate pair suffices: 41 of 81 for P = 9). A complex product takes three real
ones (Gauss): the transforms give Re + Im, Re and Im of each image's spectrum. The transforms
are small dense real matrices (no FFT op), so every step is a matrix product on row-major
operands, and so is every step of the gradient autodiff derives. For the 7x7x256 -> 7x7x128
layer that is 6.7 M multiply-adds per image instead of 40.1 M for im2col (1225 taps x channels,
padding taps included) or 27.5 M for a direct convolution that skips the padding taps: 41 bins x
3 real products against 49 outputs x 25 taps.

A strided layer is first split into phases (`_phase_geometry`): the s^n phases of a conv's input
stack on the channel axis, those of a transposed conv's output on the feature axis, and the
result is a stride-1 layer with a kernel of ~k/s taps per dim (the DCGAN's 5x5 stride-2 layers:
3x3 on 7x7 maps, 34 bins of 8x8, 0.54 of im2col's multiply-adds).

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

from gan_jax.ops.shapes import conv_out_size, conv_transpose_out_size


def _offsets(kernel_size, pads, dilation) -> list[list[int]]:
    # Tap t of output position i reads input position i + t * d - lo.
    return [[t * d - lo for t in range(k)] for k, (lo, _), d in zip(kernel_size, pads, dilation, strict=True)]


def _circular_sizes(in_size, out_size, offsets) -> list[int]:
    # The smallest P at which reads before the data (offset < 0) wrap to positions >= in_size and
    # reads past the last output's window do not wrap at all, and inputs / outputs stay distinct.
    return [max(n, o, n - min(off), o + max(off)) for n, o, off in zip(in_size, out_size, offsets, strict=True)]


def _bins(sizes: Sequence[int]) -> list[tuple[int, ...]]:
    """One bin of each conjugate pair k, -k (mod P): the input is real, so X^[-k] = conj X^[k]
    and the other carries nothing new. ceil((prod P + self-conjugate bins) / 2) bins: 41 of 81
    for 9x9 (half the last dim, as rfft keeps, would be 45), 34 of 64 for 8x8 (rfft: 40)."""
    bins = []
    for k in itertools.product(*map(range, sizes)):
        if k <= tuple(-a % p for a, p in zip(k, sizes, strict=True)):
            bins.append(k)
    return bins


def _phases(positions: Sequence[Sequence[int]], bins, sizes) -> np.ndarray:
    """2*pi * sum_d position_d * bin_d / P_d, shape (B, len(positions)), float64."""
    pos = np.asarray(positions, np.float64).reshape(len(positions), len(sizes))
    freq = np.asarray(bins, np.float64) / np.asarray(sizes, np.float64)
    return 2 * np.pi * freq @ pos.T


@functools.lru_cache(maxsize=64)
def _dft_matrices(in_size, kernel_size, pads, dilation):
    """float32 (t_in (3B, S), t_kernel (3B, T), t_out (I, 3B)) for one layer geometry."""
    offsets = _offsets(kernel_size, pads, dilation)
    out_size = conv_out_size(in_size, kernel_size, (1,) * len(in_size), pads, dilation)
    sizes = _circular_sizes(in_size, out_size, offsets)
    bins = _bins(sizes)
    # X^[k] = sum_j x[j] e^{-i phase(j, k)};  W^[k] = sum_t w[t] e^{+i phase(offset_t, k)};
    # y[i] = (1 / prod P) sum_k c_k Re(X^[k] W^[k] e^{+i phase(i, k)}) over the bins kept, c_k = 2
    # for a bin that stands for its conjugate too, 1 for a self-conjugate one.
    a_in = _phases(list(itertools.product(*map(range, in_size))), bins, sizes)
    a_w = _phases(list(itertools.product(*offsets)), bins, sizes)
    a_out = _phases(list(itertools.product(*map(range, out_size))), bins, sizes).T  # (I, B)
    self_conjugate = np.asarray([k == tuple(-a % p for a, p in zip(k, sizes, strict=True)) for k in bins])
    weight = np.where(self_conjugate, 1.0, 2.0) / np.prod(sizes)
    # Gauss's three real products per complex one: with X^ = a + ib and W^ = c + id,
    # k1 = (a + b) c, k2 = a (d - c), k3 = b (c + d); Re = k1 - k3, Im = k1 + k2.
    cos_in, sin_in = np.cos(a_in), -np.sin(a_in)
    t_in = np.concatenate([cos_in + sin_in, cos_in, sin_in])  # rows (a + b, a, b) x bins
    cos_w, sin_w = np.cos(a_w), np.sin(a_w)
    t_kernel = np.concatenate([cos_w, sin_w - cos_w, cos_w + sin_w])  # rows (c, d - c, c + d) x bins
    # y = sum_k c_k (cos Re - sin Im) = (cos - sin) k1 - sin k2 - cos k3.
    cos, sin = weight * np.cos(a_out), weight * np.sin(a_out)
    t_out = np.concatenate([cos - sin, -sin, -cos], axis=1)  # (I, 3B)
    return tuple(np.asarray(m, np.float32) for m in (t_in, t_kernel, t_out))


def _phase_geometry(in_size, kernel_size, strides, pads, dilation, transposed):
    """The stride-1 layer that a strided one is, after splitting the strided side into phases.

    A conv reads input s*i + t*d - lo for output i and tap t: phase p = (t*d - lo) mod s of the
    input, at offset (t*d - lo) // s, so stacking the s^n input phases on the channel axis gives
    a stride-1 conv. A transposed conv writes input i with tap t to output lo + s*i - t*d: output
    phase p = (lo - t*d) mod s at offset (p - lo + t*d) / s, so the output phases stack on the
    feature axis. Returns (taps: per dim [(phase, offset index)], kernel size, pads, in size,
    out size) of that layer."""
    taps, ks, new_pads, new_in, new_out = [], [], [], [], []
    out_size = (conv_transpose_out_size if transposed else conv_out_size)(in_size, kernel_size, strides, pads, dilation)
    for n, o, k, s, (lo, _), d in zip(in_size, out_size, kernel_size, strides, pads, dilation, strict=True):
        if transposed:
            phase = [(lo - t * d) % s for t in range(k)]
            off = [(p - lo + t * d) // s for t, p in zip(range(k), phase, strict=True)]
            m_in, m_out = n, -(-o // s)
        else:
            phase = [(t * d - lo) % s for t in range(k)]
            off = [(t * d - lo) // s for t in range(k)]
            m_in, m_out = -(-n // s), o
        k_new, lo_new = max(off) - min(off) + 1, -min(off)
        taps.append([(p, o - min(off)) for p, o in zip(phase, off, strict=True)])
        ks.append(k_new)
        new_pads.append((lo_new, m_out - m_in - lo_new + k_new - 1))
        new_in.append(m_in)
        new_out.append(m_out)
    return taps, tuple(ks), tuple(new_pads), tuple(new_in), tuple(new_out)


def dft_cost_ratio(x_shape, kernel_shape, strides, pads, dilation, transposed: bool) -> float:
    """Multiply-adds of the 'dft' lowering over those of im2col (all taps) for one layer."""
    n, *in_size = x_shape[:-1]
    *kernel_size, c, o = kernel_shape
    taps, ks, new_pads, new_in, new_out = _phase_geometry(in_size, kernel_size, strides, pads, dilation, transposed)
    phases = int(np.prod(strides))
    c_new, o_new = (c, o * phases) if transposed else (c * phases, o)
    sizes = _circular_sizes(new_in, new_out, _offsets(ks, new_pads, (1,) * len(ks)))
    b = len(_bins(sizes))
    s, i, t = np.prod(new_in), np.prod(new_out), np.prod(ks)
    # Bin products, input, output and kernel transforms (the last once per batch), 3 parts each.
    dft = 3 * b * c_new * o_new + 3 * b * s * c_new + 3 * b * i * o_new + 3 * b * t * c_new * o_new / max(n, 1)
    positions = np.prod(in_size) if transposed else np.prod(new_out)  # im2col rows: outputs of a conv
    return float(dft / max(positions * np.prod(kernel_size) * c * o, 1))


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def dft_conv(x: jax.Array, kernel: jax.Array, strides: tuple, pads: tuple, dilation: tuple,
             transposed: bool) -> jax.Array:
    """x (N, *in, C), kernel (*k, C, O) -> (N, *out, O) as `lax.conv_general_dilated`
    (transposed=False) or `lax.conv_transpose` with transpose_kernel=False (True), explicit
    (lo, hi) pads (negative ones crop)."""
    n, *in_size, c = x.shape
    *kernel_size, _, o = kernel.shape
    nsp = len(kernel_size)
    if all(s == 1 for s in strides):
        # With stride 1 a transposed conv is this same cross-correlation: input i with tap t
        # lands on output lo + i - t*d.
        return _dft_conv_stride1(x, kernel, pads, dilation)
    taps, ks, new_pads, new_in, new_out = _phase_geometry(in_size, kernel_size, strides, pads, dilation, transposed)
    # Open mesh of (offset, phase) indices: tap (t_1, ..., t_n) goes to kernel[offsets..., phases...].
    mesh = lambda j: [np.asarray([tp[j] for tp in dim]).reshape([-1 if a == i else 1 for a in range(nsp)])
                      for i, dim in enumerate(taps)]
    offsets, phases = mesh(1), mesh(0)
    if transposed:
        combined = jnp.zeros((*ks, c, *strides, o), kernel.dtype).at[(*offsets, slice(None), *phases)].set(kernel)
        y = _dft_conv_stride1(x, combined.reshape(*ks, c, -1), new_pads, (1,) * nsp)  # (N, *M, phases*O)
        y = y.reshape(n, *new_out, *strides, o)
        y = y.transpose(0, *[a for i in range(nsp) for a in (1 + i, 1 + nsp + i)], 1 + 2 * nsp)
        y = y.reshape(n, *[m * s for m, s in zip(new_out, strides, strict=True)], o)
        out_size = conv_transpose_out_size(in_size, kernel_size, strides, pads, dilation)
        return y[(slice(None), *[slice(0, m) for m in out_size])]
    combined = jnp.zeros((*ks, *strides, c, o), kernel.dtype).at[(*offsets, *phases)].set(kernel)
    # Space to depth: x[s*m + p] -> phase p of position m, zeros past the end.
    x = jnp.pad(x, [(0, 0)] + [(0, m * s - h) for m, s, h in zip(new_in, strides, in_size, strict=True)] + [(0, 0)])
    x = x.reshape(n, *[a for m, s in zip(new_in, strides, strict=True) for a in (m, s)], c)
    x = x.transpose(0, *[1 + 2 * i for i in range(nsp)], *[2 + 2 * i for i in range(nsp)], 1 + 2 * nsp)
    return _dft_conv_stride1(x.reshape(n, *new_in, -1), combined.reshape(*ks, -1, o), new_pads, (1,) * nsp)


def _dft_conv_stride1(x: jax.Array, kernel: jax.Array, pads: tuple, dilation: tuple) -> jax.Array:
    """Stride-1 cross-correlation: x (N, *in, C), kernel (*k, C, O), explicit (lo, hi) pads
    (negative crops) -> (N, *out, O), as `lax.conv_general_dilated` with window strides 1."""
    n, *in_size, c = x.shape
    *kernel_size, _, o = kernel.shape
    out_size = conv_out_size(in_size, kernel_size, (1,) * len(in_size), pads, dilation)
    t_in, t_kernel, t_out = _dft_matrices(tuple(in_size), tuple(kernel_size), pads, dilation)
    dtype = jnp.result_type(x, kernel)
    t_in, t_kernel, t_out = (jnp.asarray(m, dtype) for m in (t_in, t_kernel, t_out))
    b, s = t_in.shape[0] // 3, t_in.shape[1]
    # Every step is a plain (batched) matrix product on row-major operands, and so is each step
    # of its gradient: the only data movement is x to (S, N, C) and y back to (N, I, O).
    xf = t_in @ x.reshape(n, s, c).transpose(1, 0, 2).reshape(s, n * c)  # (3B, N*C): Re + Im, Re, Im
    wf = (t_kernel @ kernel.reshape(-1, c * o)).reshape(3 * b, c, o)  # c, d - c, c + d per bin
    z = jnp.matmul(xf.reshape(3 * b, n, c), wf)  # (3B, N, O): k1, k2, k3 per bin, one batched product
    y = t_out @ z.reshape(3 * b, n * o)  # (I, N*O)
    return y.reshape(-1, n, o).transpose(1, 0, 2).reshape(n, *out_size, o)
