"""Convolutions that are fast on XLA:CPU, numerically the same layers as flax's.

XLA's CPU convolution kernels are slow (the weight gradient of a strided transposed
convolution especially), while its fp32 dot is decent. The 'cpu_fast' implementation therefore
writes every convolution as shifted strided slices plus one dot product:

* conv:           y = im2col(x) @ W              (gather, then dot)
* conv_transpose: y = col2im(x @ W)              (dot, then scatter-add of shifted pads)

The two are adjoint to each other, so the gradient of one is built from the other: the input
gradient of a conv is a dot-then-scatter, the input gradient of a transposed conv is a
gather-then-dot, and both weight gradients are single matrix products (patches^T @ dout). No
convolution op reaches XLA, neither forward nor backward. The scatter form of the transposed
conv never multiplies the zeros of the stride-dilated input, so it does the same FLOPs as a
sub-pixel (phase) decomposition with a single dot.

`impl='dft'` (gan_jax/ops/conv_dft.py) instead multiplies in a small frequency domain, which
for small maps and large kernels needs 0.17-0.54x the multiply-adds of im2col. `impl='auto'`
picks per layer (`default_conv_impl`).

Layouts: NHWC inputs (any number of spatial dims, exactly one batch dim), HWIO kernels.
`impl='lax'` is exactly what `flax.linen.Conv` / `flax.linen.ConvTranspose` compute.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gan_jax.errors import ConfigError
from gan_jax.ops.conv_dft import dft_conv, dft_cost_ratio
from gan_jax.ops.shapes import conv_out_size, conv_transpose_out_size

Padding = str | Sequence[tuple[int, int]]
IMPLS = ('lax', 'cpu_fast', 'dft')
# 'auto' takes the DFT below this multiply-add ratio to im2col (`dft_cost_ratio`): the threshold
# between the DCGAN's layers, where benchmarks/conv_micro.py finds the DFT faster than the other
# lowerings, and Radford's 4x4 layers on small maps, whose transforms are relatively dearer.
DFT_MAX_COST_RATIO = 0.65


def default_conv_impl(
    x_shape: Sequence[int],
    kernel_shape: Sequence[int],
    strides: Sequence[int],
    pads: Sequence[tuple[int, int]],
    dilation: Sequence[int],
    transposed: bool,
) -> str:
    """The faster implementation of one layer on this backend: 'lax' on GPU and TPU. On the CPU,
    'dft' where it needs under DFT_MAX_COST_RATIO of the multiply-adds of im2col (`dft_cost_ratio`:
    the DCGAN's 7x7x256 -> 7x7x128 5x5 layer 0.17, its 5x5 stride-2 layers between 7x7 and 14x14
    maps 0.54; larger maps make the dense transforms too dear). Otherwise 'lax' for stride 1;
    'cpu_fast' for strided transposed convolutions (XLA:CPU's own kernels for them are much
    slower) and strided convolutions of few input channels; 'lax' for the other strided ones. The
    choices follow benchmarks/conv_micro.py under the process settings of gan_jax/cpu_runtime.py."""
    if jax.default_backend() != 'cpu':
        return 'lax'
    geometry = (tuple(x_shape), tuple(kernel_shape), tuple(strides), tuple(pads), tuple(dilation), transposed)
    if dft_cost_ratio(*geometry) < DFT_MAX_COST_RATIO:
        return 'dft'
    if max(strides, default=1) == 1:
        return 'lax'
    return 'cpu_fast' if transposed or x_shape[-1] < 16 else 'lax'


def _check_impl(impl: str) -> None:
    if impl not in ('auto', *IMPLS):
        raise ConfigError(f"impl={impl!r} is not accepted; use one of {('auto', *IMPLS)}")


def _tuple(v: int | Sequence[int] | None, n: int) -> tuple[int, ...]:
    if v is None:
        return (1,) * n
    if isinstance(v, int):
        return (v,) * n
    return tuple(int(a) for a in v)


def _dimension_numbers(ndim: int) -> lax.ConvDimensionNumbers:
    # Channels-last input/output, kernel (*spatial, in, out): flax's convention.
    shape = (1,) * ndim
    spatial = ''.join('HWDXYZ'[: ndim - 2])
    specs = ('N' + spatial + 'C', spatial + 'IO', 'N' + spatial + 'C')
    return lax.conv_dimension_numbers(shape, shape, specs)


def conv_pads(
    in_size: Sequence[int],
    kernel_size: Sequence[int],
    strides: Sequence[int],
    padding: Padding,
    dilation: Sequence[int],
) -> list[tuple[int, int]]:
    """Explicit (lo, hi) pads per spatial dim of `lax.conv_general_dilated` for `padding`."""
    if isinstance(padding, str):
        if padding not in ('SAME', 'VALID'):
            raise ConfigError(f"padding={padding!r} is not accepted; use 'SAME', 'VALID' or (lo, hi) pairs")
        k_eff = [(k - 1) * d + 1 for k, d in zip(kernel_size, dilation, strict=True)]
        return [tuple(p) for p in lax.padtype_to_pads(tuple(in_size), k_eff, tuple(strides), padding)]
    return [(int(lo), int(hi)) for lo, hi in padding]


def conv_transpose_pads(
    kernel_size: Sequence[int], strides: Sequence[int], padding: Padding, dilation: Sequence[int]
) -> list[tuple[int, int]]:
    """Pads of the stride-dilated input in `lax.conv_transpose` (use_consistent_padding=False).

    'SAME' / 'VALID' name the padding of the forward conv this transposes; explicit pairs are
    applied as-is, as in lax.
    """
    if isinstance(padding, str):
        if padding not in ('SAME', 'VALID'):
            raise ConfigError(f"padding={padding!r} is not accepted; use 'SAME', 'VALID' or (lo, hi) pairs")
        pads = []
        for k, s, d in zip(kernel_size, strides, dilation, strict=True):
            k = (k - 1) * d + 1
            if padding == 'SAME':
                pad_len = k + s - 2
                pad_a = k - 1 if s > k - 1 else int(np.ceil(pad_len / 2))
            else:
                pad_len = k + s - 2 + max(k - s, 0)
                pad_a = k - 1
            pads.append((pad_a, pad_len - pad_a))
        return pads
    return [(int(lo), int(hi)) for lo, hi in padding]


# ---------------------------------------------------------------------------------------------
# Gather (im2col) and its adjoint scatter (col2im). `offsets[dim][k]` is where tap k of output
# position 0 reads in the unpadded input; output position i reads at offsets + stride * i.


def _gather(x: jax.Array, offsets: list[list[int]], strides: Sequence[int], out_size: Sequence[int]):
    """x (N, *in, C) -> patches (N, *out, T*C), taps in kernel (row-major) order."""
    pads = [(0, 0)]
    for off, s, o, n in zip(offsets, strides, out_size, x.shape[1:-1], strict=True):
        pads.append((max(0, -min(off)), max(0, max(off) + (o - 1) * s + 1 - n)))
    pads.append((0, 0))
    if any(p != (0, 0) for p in pads):
        x = lax.pad(x, jnp.zeros((), x.dtype), [(lo, hi, 0) for lo, hi in pads])
    # One spatial dim at a time, last dim first: 5 + 5 slices for a 5x5 kernel instead of 25, the
    # second stage reading the first's smaller output, and each stage stacks its taps in front of
    # the previous ones' so the taps come out row-major with no transpose (a transpose of the
    # gathered taps is a full extra pass over the largest array of the layer).
    for d in reversed(range(len(offsets))):
        off, s, o = offsets[d], strides[d], out_size[d]
        axis = 1 + d
        cols = []
        for t in off:
            start = [0] * x.ndim
            start[axis] = t + pads[axis][0]
            limit = list(x.shape)
            limit[axis] = start[axis] + (o - 1) * s + 1
            step = [1] * x.ndim
            step[axis] = s
            cols.append(lax.slice(x, start, limit, step))
        x = jnp.stack(cols, axis=-2)  # (..., T_d, later taps * C)
        x = x.reshape(*x.shape[:-2], -1)
    return x


def _scatter(cols: jax.Array, offsets: list[list[int]], strides: Sequence[int], out_size: Sequence[int]):
    """Adjoint of `_gather`: cols (N, *in, T*C) -> (N, *out, C), a sum of shifted pads.

    Done per output phase (o mod stride): each phase only sums the taps that land on it, as
    stride-1 pads, and the phases are interleaved at the end. Summing all T taps as strided pads
    of the full output instead makes each output element evaluate every pad.
    """
    taps = list(itertools.product(*[range(len(off)) for off in offsets]))
    n, c, nsp = cols.shape[0], cols.shape[-1] // len(taps), len(out_size)
    q = [-(-o // s) for o, s in zip(out_size, strides, strict=True)]  # phase grid size
    zero = jnp.zeros((), cols.dtype)
    phases: dict[tuple[int, ...], jax.Array] = {}
    for j, tap in enumerate(taps):
        part = cols[..., j * c : (j + 1) * c]
        phase = tuple(offsets[i][t] % strides[i] for i, t in enumerate(tap))
        cfg = [(0, 0, 0)]
        for i, t in enumerate(tap):
            lo = (offsets[i][t] - phase[i]) // strides[i]
            # Negative lo/hi crop: taps that fall outside the output are dropped.
            cfg.append((lo, q[i] - lo - part.shape[i + 1], 0))
        cfg.append((0, 0, 0))
        placed = lax.pad(part, zero, cfg)
        phases[phase] = placed + phases[phase] if phase in phases else placed
    if len(phases) == 1 and all(s == 1 for s in strides):
        return phases[(0,) * nsp]
    empty = jnp.zeros((n, *q, c), cols.dtype)
    grid = [phases.get(r, empty) for r in itertools.product(*[range(s) for s in strides])]
    y = jnp.stack(grid, axis=1).reshape(n, *strides, *q, c)  # (N, *phase, *grid, C)
    perm = [0] + [a for i in range(nsp) for a in (1 + nsp + i, 1 + i)] + [1 + 2 * nsp]
    y = y.transpose(perm).reshape(n, *[a * s for a, s in zip(q, strides, strict=True)], c)
    return y[(slice(None), *[slice(0, o) for o in out_size])]


def _dot_last(a: jax.Array, b: jax.Array) -> jax.Array:
    """(..., K) @ (K, M) -> (..., M) as one 2-D dot."""
    lead = a.shape[:-1]
    return jnp.dot(a.reshape(-1, a.shape[-1]), b).reshape(*lead, b.shape[-1])


def _dot_first(a: jax.Array, b: jax.Array) -> jax.Array:
    """a (..., K)^T @ b (..., M) -> (K, M), contracting all leading dims."""
    return jnp.dot(a.reshape(-1, a.shape[-1]).T, b.reshape(-1, b.shape[-1]))


# Geometry is static: (offsets, strides, in_size, out_size) with tuples so it hashes.
def _geom(offsets, strides, in_size, out_size):
    return (tuple(tuple(o) for o in offsets), tuple(strides), tuple(in_size), tuple(out_size))


# Both products get hand-written VJPs: autodiff would transpose the concatenation of taps into a
# sum of T full-size pads (T times the work) instead of one gather.
@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _gather_dot(x: jax.Array, w_mat: jax.Array, geom) -> jax.Array:
    """im2col(x) @ w_mat: x (N, *in, C), w_mat (T*C, O) -> (N, *out, O)."""
    offsets, strides, _, out_size = geom
    return _dot_last(_gather(x, offsets, strides, out_size), w_mat)


def _gather_dot_fwd(x, w_mat, geom):
    offsets, strides, _, out_size = geom
    # Keeping the patches avoids recomputing the gather; it costs their memory until backward.
    patches = _gather(x, offsets, strides, out_size)
    return _dot_last(patches, w_mat), (patches, w_mat)


def _gather_dot_bwd(geom, res, g):
    offsets, strides, in_size, _ = geom
    patches, w_mat = res
    dw = _dot_first(patches, g)
    dx = _scatter(_dot_last(g, w_mat.T), offsets, strides, in_size)
    return dx, dw


_gather_dot.defvjp(_gather_dot_fwd, _gather_dot_bwd)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _dot_scatter(x: jax.Array, w_mat: jax.Array, geom) -> jax.Array:
    """col2im(x @ w_mat): x (N, *in, C), w_mat (C, T*O) -> (N, *out, O)."""
    offsets, strides, _, out_size = geom
    return _scatter(_dot_last(x, w_mat), offsets, strides, out_size)


def _dot_scatter_fwd(x, w_mat, geom):
    return _dot_scatter(x, w_mat, geom), (x, w_mat)


def _dot_scatter_bwd(geom, res, g):
    offsets, strides, in_size, _ = geom
    x, w_mat = res
    patches = _gather(g, offsets, strides, in_size)  # (N, *in, T*O)
    return _dot_last(patches, w_mat.T), _dot_first(x, patches)


_dot_scatter.defvjp(_dot_scatter_fwd, _dot_scatter_bwd)


# ---------------------------------------------------------------------------------------------


# Jitted so that eager callers (e.g. a module's init outside jit) compile one program instead
# of one per slice; inside an outer jit this is inlined.
@partial(jax.jit, static_argnums=(2, 3, 4))
def _fast_conv(x, kernel, strides, pads, dilation):
    ks, in_size = kernel.shape[:-2], x.shape[1:-1]
    out_size = conv_out_size(in_size, ks, strides, pads, dilation)
    offsets = [[t * d - lo for t in range(k)] for k, d, (lo, _) in zip(ks, dilation, pads, strict=True)]
    w_mat = kernel.reshape(-1, kernel.shape[-1])
    return _gather_dot(x, w_mat, _geom(offsets, strides, in_size, out_size))


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def _patches(x: jax.Array, geom) -> jax.Array:
    """im2col(x): x (N, *in, C) -> (N, *out, T*C); its VJP is the scatter (autodiff would sum T pads)."""
    offsets, strides, _, out_size = geom
    return _gather(x, offsets, strides, out_size)


def _patches_fwd(x, geom):
    return _patches(x, geom), None


def _patches_bwd(geom, _, g):
    offsets, strides, in_size, _ = geom
    return (_scatter(g, offsets, strides, in_size),)


_patches.defvjp(_patches_fwd, _patches_bwd)


def _per_group_conv(x, kernel, strides, pads, dilation, groups: int) -> jax.Array:
    """A grouped convolution as `groups` dense ones, each by `default_conv_impl`'s choice for its
    geometry, concatenated: x (N, *in, C), kernel (*k, C/groups, O) -> (N, *out, O). On XLA:CPU this is
    the fastest form of R3GAN's layers by far, forward and through the double backward of R1
    (benchmarks/conv_micro.py --grouped)."""
    xs, ks = jnp.split(x, groups, axis=-1), jnp.split(kernel, groups, axis=-1)
    impl = default_conv_impl(xs[0].shape, ks[0].shape, strides, pads, dilation, transposed=False)
    return jnp.concatenate([conv2d(a, k, strides, pads, dilation, impl) for a, k in zip(xs, ks, strict=True)],
                           axis=-1)


@partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _fast_grouped_conv(x, kernel, strides, pads, dilation, groups):
    """A grouped convolution as im2col and one batched product over the groups: x (N, *in, C),
    kernel (*k, C/groups, O) -> (N, *out, O), output channels group-major as in lax."""
    ks, in_size = kernel.shape[:-2], x.shape[1:-1]
    out_size = conv_out_size(in_size, ks, strides, pads, dilation)
    offsets = [[t * d - lo for t in range(k)] for k, d, (lo, _) in zip(ks, dilation, pads, strict=True)]
    cols = _patches(x, _geom(offsets, strides, in_size, out_size))
    taps, c_group, out = int(np.prod(ks)), kernel.shape[-2], kernel.shape[-1]
    cols = cols.reshape(*cols.shape[:-1], taps, groups, c_group)
    w = kernel.reshape(taps, c_group, groups, out // groups)
    y = jnp.einsum('...tgc,tcgo->...go', cols, w)
    return y.reshape(*y.shape[:-2], out)


@partial(jax.jit, static_argnums=(2, 3, 4))
def _fast_conv_transpose(x, kernel, strides, pads, dilation):
    ks, in_size = kernel.shape[:-2], x.shape[1:-1]
    out_size = conv_transpose_out_size(in_size, ks, strides, pads, dilation)
    # Input i with tap t lands on output lo + s*i - t*d (lax does not flip the kernel).
    offsets = [[lo - t * d for t in range(k)] for k, d, (lo, _) in zip(ks, dilation, pads, strict=True)]
    w_mat = jnp.moveaxis(kernel, -2, 0).reshape(kernel.shape[-2], -1)  # (C, T*O), taps row-major
    return _dot_scatter(x, w_mat, _geom(offsets, strides, in_size, out_size))


def conv2d(
    x: jax.Array,
    kernel: jax.Array,
    strides: int | Sequence[int] = 1,
    padding: Padding = 'SAME',
    dilation: int | Sequence[int] = 1,
    impl: str = 'lax',
    feature_group_count: int = 1,
) -> jax.Array:
    """Cross-correlation as `flax.linen.Conv` (no bias): x (N, *sp, C), kernel (*k, C / groups, O) ->
    (N, *sp', O), with feature_group_count = groups (input and output channels split into that many
    groups, output channels group-major, as lax).

    Works for any number of spatial dims despite the name. padding: 'SAME', 'VALID' or one
    (lo, hi) pair per spatial dim. Grouped convolutions take 'lax', 'cpu_fast' or 'auto', which on the
    CPU runs one dense convolution per group (XLA:CPU's grouped convolution and its gradients are
    many times slower).
    """
    nsp = kernel.ndim - 2
    strides, dilation = _tuple(strides, nsp), _tuple(dilation, nsp)
    _check_impl(impl)
    pads = conv_pads(x.shape[1:-1], kernel.shape[:-2], strides, padding, dilation)
    if feature_group_count > 1:
        return _grouped_conv(x, kernel, strides, pads, dilation, impl, feature_group_count)
    if impl == 'auto':
        impl = default_conv_impl(x.shape, kernel.shape, strides, pads, dilation, transposed=False)
    if impl == 'lax':
        return lax.conv_general_dilated(
            x, kernel, strides, pads, rhs_dilation=dilation, dimension_numbers=_dimension_numbers(x.ndim)
        )
    if min(conv_out_size(x.shape[1:-1], kernel.shape[:-2], strides, pads, dilation)) <= 0:
        return conv2d(x, kernel, strides, pads, dilation, 'lax')  # empty output: nothing to speed up
    if impl == 'dft':
        return dft_conv(x, kernel, strides, tuple(pads), dilation, False)
    return _fast_conv(x, kernel, strides, tuple(pads), dilation)


def _grouped_conv(x, kernel, strides, pads, dilation, impl: str, groups: int) -> jax.Array:
    if impl == 'dft':
        raise ConfigError(f"impl='dft' does not take grouped convolutions (feature_group_count={groups}); "
                          "accepted: 'auto', 'lax', 'cpu_fast'")
    empty = min(conv_out_size(x.shape[1:-1], kernel.shape[:-2], strides, pads, dilation)) <= 0
    if impl == 'auto' and jax.default_backend() == 'cpu' and not empty:
        return _per_group_conv(x, kernel, strides, pads, dilation, groups)
    if impl in ('lax', 'auto') or empty:
        return lax.conv_general_dilated(x, kernel, strides, pads, rhs_dilation=dilation,
                                        dimension_numbers=_dimension_numbers(x.ndim), feature_group_count=groups)
    return _fast_grouped_conv(x, kernel, strides, tuple(pads), dilation, groups)


def conv_transpose2d(
    x: jax.Array,
    kernel: jax.Array,
    strides: int | Sequence[int] = 1,
    padding: Padding = 'SAME',
    dilation: int | Sequence[int] = 1,
    impl: str = 'lax',
) -> jax.Array:
    """`lax.conv_transpose(..., transpose_kernel=False)` as `flax.linen.ConvTranspose` (no bias).

    x (N, *sp, C), kernel (*k, C, O) -> (N, *sp', O); with 'SAME' sp' = sp * strides. Explicit
    pads are those of the stride-dilated input, as in lax (they may be negative).
    """
    nsp = kernel.ndim - 2
    strides, dilation = _tuple(strides, nsp), _tuple(dilation, nsp)
    _check_impl(impl)
    pads = conv_transpose_pads(kernel.shape[:-2], strides, padding, dilation)
    if impl == 'auto':
        impl = default_conv_impl(x.shape, kernel.shape, strides, pads, dilation, transposed=True)
    if impl == 'lax':
        return lax.conv_transpose(
            x, kernel, strides, pads, rhs_dilation=dilation, dimension_numbers=_dimension_numbers(x.ndim)
        )
    if min(conv_transpose_out_size(x.shape[1:-1], kernel.shape[:-2], strides, pads, dilation)) <= 0:
        return conv_transpose2d(x, kernel, strides, pads, dilation, 'lax')  # empty output
    if impl == 'dft':
        return dft_conv(x, kernel, strides, tuple(pads), dilation, True)
    return _fast_conv_transpose(x, kernel, strides, tuple(pads), dilation)
