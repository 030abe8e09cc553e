"""`Conv` and `ConvTranspose`: the same layers as flax.linen's, with a selectable lowering.

Parameters ('kernel' in (*kernel_size, in, out) layout and 'bias'), their shapes, initializers
and creation order are flax's, so `Conv(...).init(key, x)` gives bitwise the params of
`nn.Conv(...).init(key, x)` and checkpoints are interchangeable. Only the computation differs:
`impl='cpu_fast'` lowers to slices + dots (see `gan_jax.ops.conv`), which on XLA:CPU is many times
faster than its kernels for strided transposed convolutions; `impl='dft'` multiplies
in a small frequency domain (see `gan_jax.ops.conv_dft`); `impl='lax'` is flax's computation;
`impl='auto'` picks per layer (`gan_jax.ops.conv.default_conv_impl`): `lax` on GPU and TPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen import initializers
from flax.linen.dtypes import promote_dtype
from flax.linen.linear import PaddingLike, canonicalize_padding, default_kernel_init
from flax.typing import Dtype, Initializer

from gan_jax.errors import ConfigError
from gan_jax.ops.conv import IMPLS, conv2d, conv_transpose2d

MODULE_IMPLS = ('auto', *IMPLS)
# Hidden units' nonlinearities by name (model.activation, model.generator_activation).
ACTIVATIONS = {"relu": nn.relu, "leaky_relu": lambda x: nn.leaky_relu(x, 0.2), "tanh": jnp.tanh,
               "elu": nn.elu, "gelu": nn.gelu}


def check_impl(impl: str, owner: str) -> str:
    """Unknown values raise ConfigError (a ValueError) naming the field; 'auto' is resolved per
    layer from its geometry by `gan_jax.ops.conv.default_conv_impl`."""
    if impl not in MODULE_IMPLS:
        raise ConfigError(f'{owner}={impl!r} is not accepted; use one of {MODULE_IMPLS}')
    return impl


def _kernel_size(kernel_size: int | Sequence[int]) -> tuple[int, ...]:
    # As flax: a bare int means a 1-D convolution.
    return (kernel_size,) if isinstance(kernel_size, int) else tuple(kernel_size)


def _broadcast(v: int | Sequence[int] | None, n: int) -> tuple[int, ...]:
    if v is None:
        v = 1
    return (v,) * n if isinstance(v, int) else tuple(v)


def _flatten_batch(inputs: jax.Array, nsp: int) -> tuple[jax.Array, tuple[int, ...] | None]:
    """Fold all leading batch dims (zero or more) into one, as flax does."""
    nbatch = inputs.ndim - (nsp + 1)
    if nbatch == 1:
        return inputs, None
    return jnp.reshape(inputs, (-1, *inputs.shape[nbatch:])), inputs.shape[:nbatch]


def _unflatten_batch(y: jax.Array, batch_shape: tuple[int, ...] | None) -> jax.Array:
    return y if batch_shape is None else jnp.reshape(y, batch_shape + y.shape[1:])


class Conv(nn.Module):
    """`flax.linen.Conv` (shared weights, input_dilation=1).

    inputs (*batch, *spatial, in) -> (*batch, *spatial', features); with 'SAME',
    spatial' = ceil(spatial / strides). padding: 'SAME', 'VALID', 'CIRCULAR', 'REFLECT',
    'CAUSAL' (1-D), an int, or (lo, hi) per spatial dim, exactly as in flax.
    """

    features: int
    kernel_size: int | Sequence[int]
    strides: None | int | Sequence[int] = 1
    padding: PaddingLike = 'SAME'
    kernel_dilation: None | int | Sequence[int] = 1
    use_bias: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    kernel_init: Initializer = default_kernel_init
    bias_init: Initializer = initializers.zeros_init()
    impl: str = 'auto'
    feature_group_count: int = 1  # groups: kernel (*k, in / groups, features), as flax

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        kernel_size = _kernel_size(self.kernel_size)
        nsp = len(kernel_size)
        inputs, batch_shape = _flatten_batch(inputs, nsp)
        strides = _broadcast(self.strides, nsp)
        impl = check_impl(self.impl, 'Conv.impl')
        groups = self.feature_group_count
        if inputs.shape[-1] % groups or self.features % groups:
            raise ConfigError(f'Conv.feature_group_count={groups} does not divide the input channels '
                              f'({inputs.shape[-1]}) and features ({self.features}); accepted: a common divisor')
        dilation = _broadcast(self.kernel_dilation, nsp)

        padding = canonicalize_padding(self.padding, nsp)
        if padding in ('CIRCULAR', 'REFLECT'):
            k_eff = [(k - 1) * d + 1 for k, d in zip(kernel_size, dilation, strict=True)]
            pads = [(0, 0)] + [((k - 1) // 2, k // 2) for k in k_eff] + [(0, 0)]
            inputs = jnp.pad(inputs, pads, mode={'CIRCULAR': 'wrap', 'REFLECT': 'reflect'}[padding])
            padding = 'VALID'
        elif padding == 'CAUSAL':
            if nsp != 1:
                raise ValueError('Causal padding is only implemented for 1D convolutions.')
            inputs = jnp.pad(inputs, [(0, 0), (dilation[0] * (kernel_size[0] - 1), 0), (0, 0)])
            padding = 'VALID'

        kernel_shape = (*kernel_size, inputs.shape[-1] // groups, self.features)
        kernel = self.param('kernel', self.kernel_init, kernel_shape, self.param_dtype)
        bias = self.param('bias', self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
        inputs, kernel, bias = promote_dtype(inputs, kernel, bias, dtype=self.dtype)

        y = conv2d(inputs, kernel, strides, padding, dilation, impl, groups)
        if bias is not None:
            y += bias.reshape((1,) * (y.ndim - 1) + bias.shape)
        return _unflatten_batch(y, batch_shape)


class ConvTranspose(nn.Module):
    """`flax.linen.ConvTranspose` with transpose_kernel=False (flax's default).

    inputs (*batch, *spatial, in) -> (*batch, *spatial', features); with 'SAME',
    spatial' = spatial * strides. padding: 'SAME', 'VALID', 'CIRCULAR', an int or (lo, hi) per
    spatial dim; explicit pads are those of the stride-dilated input, as in flax/lax.
    """

    features: int
    kernel_size: int | Sequence[int]
    strides: Sequence[int] | None = None
    padding: PaddingLike = 'SAME'
    kernel_dilation: Sequence[int] | None = None
    use_bias: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    kernel_init: Initializer = default_kernel_init
    bias_init: Initializer = initializers.zeros_init()
    impl: str = 'auto'

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        kernel_size = _kernel_size(self.kernel_size)
        nsp = len(kernel_size)
        inputs, batch_shape = _flatten_batch(inputs, nsp)
        strides = _broadcast(self.strides, nsp)
        impl = check_impl(self.impl, 'ConvTranspose.impl')
        dilation = _broadcast(self.kernel_dilation, nsp)

        kernel_shape = (*kernel_size, inputs.shape[-1], self.features)
        kernel = self.param('kernel', self.kernel_init, kernel_shape, self.param_dtype)
        padding = canonicalize_padding(self.padding, nsp)
        if padding == 'CIRCULAR':
            padding = 'VALID'
        bias = self.param('bias', self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
        inputs, kernel, bias = promote_dtype(inputs, kernel, bias, dtype=self.dtype)

        y = conv_transpose2d(inputs, kernel, strides, padding, dilation, impl)

        if self.padding == 'CIRCULAR':
            # Flax's convention: pad to whole periods (input size * stride), "+1" on the left,
            # then fold the periods onto each other.
            periods = [n * s for n, s in zip(inputs.shape[1:-1], strides, strict=True)]
            diffs = [-(m - p) % (2 * p) for m, p in zip(y.shape[1:-1], periods, strict=True)]
            y = jnp.pad(y, [(0, 0)] + [((d + 1) // 2, d // 2) for d in diffs] + [(0, 0)])
            for i in range(1, y.ndim - 1):
                y = y.reshape(y.shape[:i] + (-1, periods[i - 1]) + y.shape[i + 1 :]).sum(axis=i)

        if bias is not None:
            y += jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))
        return _unflatten_batch(y, batch_shape)
