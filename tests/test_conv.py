"""Conv / ConvTranspose (gan_jax.models.layers) are flax's layers: params, outputs, gradients.

Every case compares against the real `flax.linen.Conv` / `flax.linen.ConvTranspose` with the
same params, for impl 'lax', 'cpu_fast' and 'dft'. fp32 at default precision: on CPU that is already
full fp32, so only summation order differs; errors are measured against the largest reference
entry (elementwise-relative error is meaningless for entries that cancel to ~0).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.errors import ConfigError
from gan_jax.models.layers import Conv, ConvTranspose
from gan_jax.ops.conv import conv2d, conv_transpose2d, default_conv_impl

RTOL = 1e-5
OURS = {'conv': Conv, 'convT': ConvTranspose}
FLAX = {'conv': nn.Conv, 'convT': nn.ConvTranspose}


def _close(actual, ref, what: str) -> None:
    actual, ref = np.asarray(actual), np.asarray(ref)
    assert actual.shape == ref.shape, (what, actual.shape, ref.shape)
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    np.testing.assert_allclose(actual, ref, rtol=RTOL, atol=RTOL * scale + 1e-30, err_msg=what)


def _check_case(kind: str, x_shape, cfg: dict, seed: int, impls=('lax', 'cpu_fast')) -> None:
    rng = np.random.RandomState(seed)
    x = jnp.asarray(rng.randn(*x_shape), jnp.float32)
    ref_mod = FLAX[kind](**cfg)
    # Random params of flax's shapes (random bias too: zeros would hide a wrong bias path).
    shapes = jax.eval_shape(ref_mod.init, jax.random.PRNGKey(0), x)
    params = jax.tree.map(lambda a: jnp.asarray(rng.randn(*a.shape) * 0.3, a.dtype), shapes)
    g = jnp.asarray(rng.randn(*jax.eval_shape(ref_mod.apply, params, x).shape), jnp.float32)
    mods = [ref_mod] + [OURS[kind](**cfg, impl=impl) for impl in impls]

    def fwd_bwd(params, x, g):
        # Output and gradients w.r.t. params and input of sum(module(x) * g), for every module;
        # one jit per case because compiling dominates the runtime of these small shapes. g is an
        # argument: as a constant, XLA folds its products with the DFT's matrices at compile time (~10 s).
        out = []
        for mod in mods:
            loss = lambda p, x, mod=mod: (jnp.sum(mod.apply(p, x) * g), mod.apply(p, x))
            (_, y), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, x)
            out.append((y, grads))
        return out

    (y_ref, (gp_ref, gx_ref)), *ours = jax.jit(fwd_bwd)(params, x, g)
    for impl, (y, (gp, gx)) in zip(impls, ours, strict=True):
        tag = f'{kind} {impl} x{tuple(x_shape)} {cfg}'
        _close(y, y_ref, f'output {tag}')
        _close(gx, gx_ref, f'd input {tag}')
        for name in gp_ref['params']:
            _close(gp['params'][name], gp_ref['params'][name], f'd {name} {tag}')


def _random_case(rng: np.random.RandomState, max_stride: int = 3):
    """A small random 2-D layer whose output is non-empty."""
    while True:
        kind = ['conv', 'convT'][rng.randint(2)]
        ks = tuple(int(k) for k in rng.randint(1, 6, size=2))  # odd and even sizes
        strides = tuple(int(s) for s in rng.randint(1, max_stride + 1, size=2))
        dil = tuple(int(d) for d in rng.randint(1, 3, size=2))
        hw = tuple(int(n) for n in rng.randint(1, 10, size=2))
        choice = rng.randint(3)
        if choice == 0:
            padding = 'SAME'
        elif choice == 1:
            padding = 'VALID'
        else:  # transposed convs also accept negative (cropping) pads in lax
            low = -1 if kind == 'convT' else 0
            padding = tuple((int(rng.randint(low, 4)), int(rng.randint(low, 4))) for _ in range(2))
        cfg = dict(features=int(rng.randint(1, 6)), kernel_size=ks, strides=strides, padding=padding,
                   kernel_dilation=dil, use_bias=bool(rng.randint(2)))
        x_shape = (int(rng.randint(1, 4)), *hw, int(rng.randint(1, 6)))
        try:
            y_shape = jax.eval_shape(FLAX[kind](**cfg).init_with_output, jax.random.PRNGKey(0),
                                     jnp.zeros(x_shape))[0].shape
        except (ValueError, TypeError):
            continue
        if min(y_shape) > 0:
            return kind, x_shape, cfg


@pytest.mark.parametrize('seed', range(40))
def test_random_layers_match_flax(seed):
    kind, x_shape, cfg = _random_case(np.random.RandomState(1000 + seed))
    # Our 'lax' path is flax's own ops; checking it on a quarter of the cases is enough.
    _check_case(kind, x_shape, cfg, seed, ('lax', 'cpu_fast', 'dft') if seed % 4 == 0 else ('cpu_fast', 'dft'))


@pytest.mark.parametrize('seed', range(20))
def test_random_stride1_layers_dft_match_flax(seed):
    # Random sizes, paddings (negative ones for convT) and dilations: the circular DFT length
    # must avoid wrap-around for every one of them.
    kind, x_shape, cfg = _random_case(np.random.RandomState(2000 + seed), max_stride=1)
    _check_case(kind, x_shape, cfg, seed, ('dft',))


P1 = ((1, 1), (1, 1))
# Exact DCGAN layer geometry (H, W, C_in, features, kernel, stride, padding); batch 2 instead of
# 256/64 keeps the test fast, and batch is only a matmul dimension in both paths.
DCGAN = [
    ('convT', (7, 7, 256), 128, 5, 1, 'SAME', False),
    ('convT', (7, 7, 128), 64, 5, 2, 'SAME', False),
    ('convT', (14, 14, 64), 1, 5, 2, 'SAME', False),
    ('conv', (28, 28, 1), 64, 5, 2, 'SAME', True),
    ('conv', (14, 14, 64), 128, 5, 2, 'SAME', True),
    ('conv', (64, 64, 3), 64, 4, 2, P1, True),
    ('conv', (32, 32, 64), 128, 4, 2, P1, True),
    ('conv', (16, 16, 128), 256, 4, 2, P1, True),
    ('conv', (8, 8, 256), 512, 4, 2, P1, True),
    ('convT', (4, 4, 512), 256, 4, 2, 'SAME', False),
    ('convT', (8, 8, 256), 128, 4, 2, 'SAME', False),
    ('convT', (16, 16, 128), 64, 4, 2, 'SAME', False),
    ('convT', (32, 32, 64), 3, 4, 2, 'SAME', False),
]


@pytest.mark.parametrize('layer', DCGAN, ids=lambda v: f'{v[0]}{v[1]}->{v[2]}s{v[4]}')
def test_dcgan_layers_match_flax(layer):
    kind, hwc, feat, k, s, padding, bias = layer
    cfg = dict(features=feat, kernel_size=(k, k), strides=(s, s), padding=padding, use_bias=bias)
    _check_case(kind, (2, *hwc), cfg, 7, ('lax', 'cpu_fast', 'dft'))


@pytest.mark.parametrize('kind,x_shape,cfg', [
    ('conv', (2, 9, 3), dict(features=4, kernel_size=3, padding='CAUSAL', kernel_dilation=2)),
    ('conv', (2, 7, 6, 3), dict(features=4, kernel_size=(3, 4), strides=2, padding='CIRCULAR')),
    ('conv', (2, 7, 6, 3), dict(features=4, kernel_size=(3, 3), padding='REFLECT')),
    ('convT', (2, 5, 6, 3), dict(features=4, kernel_size=(3, 4), strides=(2, 2), padding='CIRCULAR')),
    ('conv', (3, 2, 6, 5, 3), dict(features=4, kernel_size=(3, 3), strides=2)),  # 2 batch dims
    ('convT', (6, 5, 3), dict(features=4, kernel_size=(3, 3), strides=(2, 1))),  # no batch dim
    ('convT', (2, 9, 3), dict(features=2, kernel_size=(4,), strides=(3,), padding=2)),  # 1-D, int pad
    ('conv', (1, 5, 4, 3, 2), dict(features=3, kernel_size=(2, 3, 2), strides=(1, 2, 2))),  # 3-D
    ('conv', (2, 6, 5, 4, 3), dict(features=3, kernel_size=(3, 2, 3))),  # 3-D, stride 1
    ('convT', (2, 8, 3), dict(features=2, kernel_size=(4,), padding=((2, 0),))),  # 1-D, stride 1
])
def test_special_paddings_and_ranks_match_flax(kind, x_shape, cfg):
    _check_case(kind, x_shape, cfg, 3, ('lax', 'cpu_fast', 'dft'))


@pytest.mark.parametrize('kind,cfg', [
    ('conv', dict(features=5, kernel_size=(3, 3))),
    ('convT', dict(features=2, kernel_size=(4, 5), use_bias=False, strides=(2, 2))),
    ('conv', dict(features=3, kernel_size=(3, 3), param_dtype=jnp.bfloat16,
                  kernel_init=nn.initializers.normal(0.02), bias_init=nn.initializers.normal(1.0))),
    ('convT', dict(features=3, kernel_size=(3, 3), bias_init=nn.initializers.normal(1.0))),
])
def test_param_init_bitwise_identical_to_flax(kind, cfg):
    x = jnp.ones((2, 8, 8, 3))
    both = jax.jit(lambda key: (OURS[kind](**cfg).init(key, x), FLAX[kind](**cfg).init(key, x)))
    ours, ref = both(jax.random.PRNGKey(42))
    assert jax.tree.structure(ours) == jax.tree.structure(ref)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))


@pytest.mark.parametrize('x_shape,cfg', [
    ((2, 6, 6, 8), dict(features=8, kernel_size=(3, 3), feature_group_count=4)),  # R3GAN's 3x3 grouped layer
    ((2, 7, 5, 6), dict(features=9, kernel_size=(3, 2), feature_group_count=3, strides=(2, 1), padding='VALID')),
    ((1, 6, 6, 4), dict(features=4, kernel_size=(4, 4), feature_group_count=4, padding='VALID', use_bias=False)),
    ((2, 5, 5, 6), dict(features=6, kernel_size=(3, 3), feature_group_count=2, kernel_dilation=(2, 1),
                        padding=((1, 2), (0, 1)))),
])
def test_grouped_convs_match_flax(x_shape, cfg):
    # 'auto' is one dense convolution per group on the CPU.
    _check_case('conv', x_shape, cfg, seed=len(x_shape) + cfg['features'], impls=('lax', 'cpu_fast', 'auto'))


def test_grouped_conv_refusals():
    x = jnp.zeros((1, 4, 4, 6))
    with pytest.raises(ConfigError, match="impl='dft' does not take grouped convolutions"):
        Conv(6, (3, 3), feature_group_count=3, impl='dft').init(jax.random.PRNGKey(0), x)
    with pytest.raises(ConfigError, match='Conv.feature_group_count=4 does not divide'):
        Conv(6, (3, 3), feature_group_count=4).init(jax.random.PRNGKey(0), x)
    grad = jax.grad(lambda x, k: jnp.sum(conv2d(x, k, 1, 'SAME', 1, 'cpu_fast', 3) ** 2), argnums=(0, 1))
    assert 'convolution' not in jax.jit(grad).lower(x, jnp.zeros((3, 3, 2, 6))).as_text()
    # 'auto' on the CPU: three dense convolutions, not XLA's grouped one (whose gradients are far slower).
    per_group = jax.jit(lambda x, k: conv2d(x, k, 1, 'SAME', 1, 'auto', 3)).lower(x, jnp.zeros((3, 3, 2, 6)))
    grouped = jax.jit(lambda x, k: conv2d(x, k, 1, 'SAME', 1, 'lax', 3)).lower(x, jnp.zeros((3, 3, 2, 6)))
    assert 'feature_group_count = 3 ' in grouped.as_text()
    assert 'feature_group_count = 3 ' not in per_group.as_text() and per_group.as_text().count('convolution') >= 3


@pytest.mark.parametrize('op', [conv2d, conv_transpose2d])
@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('impl', ['cpu_fast', 'dft'])
def test_fast_impls_emit_no_convolution(op, stride, impl):
    x, k = jnp.zeros((2, 8, 8, 3)), jnp.zeros((5, 5, 3, 4))

    def f(x, k, impl):
        return jnp.sum(op(x, k, stride, 'SAME', 1, impl) ** 2)

    grad = jax.grad(f, argnums=(0, 1))
    for fn in (f, grad):
        assert 'convolution' not in jax.jit(fn, static_argnums=2).lower(x, k, impl).as_text()
    # The probe itself works: the lax path does contain convolutions.
    assert 'convolution' in jax.jit(grad, static_argnums=2).lower(x, k, 'lax').as_text()


def test_module_cpu_fast_emits_no_convolution():
    x = jnp.zeros((2, 7, 7, 8))
    for mod in (Conv(4, (5, 5), strides=2, impl='cpu_fast'), ConvTranspose(4, (5, 5), strides=(2, 2), impl='cpu_fast')):
        params = mod.init(jax.random.PRNGKey(0), x)
        grad = jax.grad(lambda p, x, mod=mod: jnp.sum(mod.apply(p, x) ** 2), argnums=(0, 1))
        assert 'convolution' not in jax.jit(grad).lower(params, x).as_text()


def test_impl_validation_and_default():
    def auto(x_shape, kernel_shape, strides, pads, transposed):
        return default_conv_impl(x_shape, kernel_shape, strides, pads, (1, 1), transposed)

    on_cpu = jax.default_backend() == 'cpu'
    fast, dft, p1, p2 = ('cpu_fast' if on_cpu else 'lax'), ('dft' if on_cpu else 'lax'), ((1, 1),) * 2, ((2, 2),) * 2
    # The TF-tutorial DCGAN: 0.17 and 0.54 of im2col's multiply-adds in the DFT; its first and last
    # layers (1 channel, 28x28) would pay more for the transforms than they save.
    assert auto((256, 7, 7, 256), (5, 5, 256, 128), (1, 1), p2, True) == dft
    assert auto((256, 7, 7, 128), (5, 5, 128, 64), (2, 2), ((3, 2),) * 2, True) == dft
    assert auto((256, 14, 14, 64), (5, 5, 64, 128), (2, 2), ((1, 2),) * 2, False) == dft
    assert auto((256, 14, 14, 64), (5, 5, 64, 1), (2, 2), ((3, 2),) * 2, True) == fast
    assert auto((256, 28, 28, 1), (5, 5, 1, 64), (2, 2), ((1, 2),) * 2, False) == fast
    # Radford's 4x4 layers on 8x8-64x64 maps: dense transforms cost more than they save.
    assert auto((64, 32, 32, 64), (4, 4, 64, 128), (2, 2), p1, False) == 'lax'
    assert auto((64, 16, 16, 128), (4, 4, 128, 256), (2, 2), p1, False) == 'lax'  # 0.73: 1.1x slower in dft
    assert auto((64, 8, 8, 256), (4, 4, 256, 128), (2, 2), p2, True) == fast  # 0.73: 1.3x slower in dft
    assert auto((64, 64, 64, 64), (3, 3, 64, 64), (1, 1), p1, False) == 'lax'
    assert auto((64, 8, 8, 64), (1, 1, 64, 64), (1, 1), ((0, 0),) * 2, False) == 'lax'
    x = jnp.zeros((1, 4, 4, 2))
    with pytest.raises(ValueError, match=r"Conv\.impl='fast'.*'auto', 'lax', 'cpu_fast', 'dft'"):
        Conv(3, (3, 3), impl='fast').init(jax.random.PRNGKey(0), x)
    with pytest.raises(ConfigError, match=r"ConvTranspose\.impl='xla'"):
        ConvTranspose(3, (3, 3), impl='xla').init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match='impl'):
        conv2d(x, jnp.zeros((3, 3, 2, 3)), impl='nope')
