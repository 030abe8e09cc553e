"""Micro-benchmark: forward+backward of each DCGAN (or ResNet GAN) conv layer, for each impl (lax, cpu_fast, dft).

Usage: python benchmarks/conv_micro.py [--reps 5] [--layers tf,radford,resnet]
       python benchmarks/conv_micro.py --grouped   # R3GAN's grouped 3x3 layers, also through R1's double backward

Each layer is jitted as y, (dx, dkernel) = vjp(conv)(x, kernel)(g): the work one training step
does for that layer. Implementations are timed alternately (A B A B ...) because the 2 CPU
cores are shared, and medians are reported. The last line holds the figures as KEY=VALUE.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import cpu_runtime
from gan_jax.ops.conv import IMPLS, conv2d, conv_pads, conv_transpose2d, conv_transpose_pads, default_conv_impl

P1 = ((1, 1), (1, 1))
# name, kind, batch, (H, W, C_in), C_out, kernel, stride, padding
LAYERS = {
    'tf': [
        ('tf_g1', 'convT', 256, (7, 7, 256), 128, 5, 1, 'SAME'),
        ('tf_g2', 'convT', 256, (7, 7, 128), 64, 5, 2, 'SAME'),
        ('tf_g3', 'convT', 256, (14, 14, 64), 1, 5, 2, 'SAME'),
        ('tf_d1', 'conv', 256, (28, 28, 1), 64, 5, 2, 'SAME'),
        ('tf_d2', 'conv', 256, (14, 14, 64), 128, 5, 2, 'SAME'),
    ],
    'radford': [
        ('rd_d1', 'conv', 64, (64, 64, 3), 64, 4, 2, P1),
        ('rd_d2', 'conv', 64, (32, 32, 64), 128, 4, 2, P1),
        ('rd_d3', 'conv', 64, (16, 16, 128), 256, 4, 2, P1),
        ('rd_d4', 'conv', 64, (8, 8, 256), 512, 4, 2, P1),
        ('rd_g1', 'convT', 64, (4, 4, 512), 256, 4, 2, 'SAME'),
        ('rd_g2', 'convT', 64, (8, 8, 256), 128, 4, 2, 'SAME'),
        ('rd_g3', 'convT', 64, (16, 16, 128), 64, 4, 2, 'SAME'),
        ('rd_g4', 'convT', 64, (32, 32, 64), 3, 4, 2, 'SAME'),
    ],
    # The 3x3 stride-1 layers of the ResNet GANs at CIFAR-10's batch 64: SNGAN's G (256 channels) and D
    # (128), BigGAN's 32x32 G (384) and StudioGAN-width D (192).
    'resnet': [
        ('sn_g8', 'conv', 64, (8, 8, 256), 256, 3, 1, 'SAME'),
        ('sn_g16', 'conv', 64, (16, 16, 256), 256, 3, 1, 'SAME'),
        ('sn_g32', 'conv', 64, (32, 32, 256), 256, 3, 1, 'SAME'),
        ('sn_d32', 'conv', 64, (32, 32, 128), 128, 3, 1, 'SAME'),
        ('sn_d16', 'conv', 64, (16, 16, 128), 128, 3, 1, 'SAME'),
        ('sn_d8', 'conv', 64, (8, 8, 128), 128, 3, 1, 'SAME'),
        ('bg_g8', 'conv', 64, (8, 8, 384), 384, 3, 1, 'SAME'),
        ('bg_g16', 'conv', 64, (16, 16, 384), 384, 3, 1, 'SAME'),
        ('bg_d16', 'conv', 64, (16, 16, 192), 192, 3, 1, 'SAME'),
        ('bg_d8', 'conv', 64, (8, 8, 192), 192, 3, 1, 'SAME'),
    ],
}

def time_alternately(fns: dict, args: tuple, reps: int) -> dict[str, float]:
    """Median ms of each jitted fn(*args), after two warm-up calls (compilation), timed alternately
    (A B A B ...) so that the shared cores' drift falls on all alike."""
    for fn in fns.values():
        for _ in range(2):
            jax.block_until_ready(fn(*args))
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: statistics.median(v) for name, v in times.items()}


# R3GAN's grouped 3x3 layers (expanded channels, cardinality): the short runs' width 32 at batch 16, and the
# CIFAR10 preset's 768 (1536 expanded, 96 groups) at batch 4.
GROUPED = [
    ('r3s_32', 16, (32, 32, 64), 4), ('r3s_8', 16, (8, 8, 64), 4),
    ('r3_32', 4, (32, 32, 1536), 96), ('r3_8', 4, (8, 8, 1536), 96),
]
GROUPED_IMPLS = ('lax', 'cpu_fast', 'auto')


def time_grouped(layer, reps: int) -> dict[str, float]:
    """Median ms per impl of fwd+bwd and of the gradient of ||d/dx sum(y^2)||^2 (R1's double backward)."""
    _, n, (h, w, c), groups = layer
    rng = np.random.RandomState(0)
    x = jnp.asarray(rng.randn(n, h, w, c), jnp.float32)
    kern = jnp.asarray(rng.randn(3, 3, c // groups, c) * 0.05, jnp.float32)

    def conv(x, k, impl):
        return conv2d(x, k, 1, 'SAME', 1, impl, groups)

    def r1(k, x, impl):
        return jnp.sum(jax.grad(lambda x: jnp.sum(conv(x, k, impl) ** 2))(x) ** 2)

    fns = {}
    for impl in GROUPED_IMPLS:
        fns[f'{impl}_bwd'] = jax.jit(jax.grad(lambda x, k, impl=impl: jnp.sum(conv(x, k, impl) ** 2), (0, 1)))
        fns[f'{impl}_r1'] = jax.jit(jax.grad(lambda x, k, impl=impl: r1(k, x, impl), (0, 1)))
    return time_alternately(fns, (x, kern), reps)


def grouped_main(reps: int) -> None:
    names = [f'{i}_{m}' for i in GROUPED_IMPLS for m in ('bwd', 'r1')]
    print(f'{"layer":8s} {"input":>20s} groups ' + ' '.join(f'{n + " ms":>13s}' for n in names))
    figures = {}
    for layer in GROUPED:
        name, n, hwc, groups = layer
        t = time_grouped(layer, reps)
        print(f'{name:8s} {str((n, *hwc)):>20s} {groups:6d} ' + ' '.join(f'{t[k]:13.1f}' for k in names), flush=True)
        figures.update({f'{name}_{k}_ms': round(t[k], 2) for k in names})
    print(' '.join(f'{k}={v}' for k, v in figures.items()))


def make_step(kind: str, stride: int, padding, impl: str):
    """Jitted fwd+bwd of one layer: (x, kernel, g) -> (y, dx, dkernel)."""
    op = conv2d if kind == 'conv' else conv_transpose2d

    def step(x, k, g):
        y, vjp = jax.vjp(lambda x, k: op(x, k, stride, padding, 1, impl), x, k)
        return (y, *vjp(g))

    return jax.jit(step)


def time_layer(layer, impls: tuple[str, ...], reps: int) -> dict[str, float]:
    """Median ms of fwd+bwd per impl, timed alternately."""
    _, kind, n, (h, w, c), o, k, s, pad = layer
    rng = np.random.RandomState(0)
    x = jnp.asarray(rng.randn(n, h, w, c), jnp.float32)
    kern = jnp.asarray(rng.randn(k, k, c, o) * 0.05, jnp.float32)
    steps = {impl: make_step(kind, s, pad, impl) for impl in impls}
    op = conv2d if kind == 'conv' else conv_transpose2d
    y_shape = jax.eval_shape(lambda a, b: op(a, b, s, pad, 1, 'lax'), x, kern).shape
    g = jnp.asarray(rng.randn(*y_shape), jnp.float32)
    return time_alternately(steps, (x, kern, g), reps)


def auto_impl(layer) -> str:
    _, kind, n, (h, w, c), o, k, s, pad = layer
    if kind == 'conv':
        pads = conv_pads((h, w), (k, k), (s, s), pad, (1, 1))
    else:
        pads = conv_transpose_pads((k, k), (s, s), pad, (1, 1))
    return default_conv_impl((n, h, w, c), (k, k, c, o), (s, s), pads, (1, 1), kind == 'convT')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--reps', type=int, default=5)
    ap.add_argument('--layers', default='tf,radford', help='comma list of: ' + ','.join(LAYERS))
    ap.add_argument('--grouped', action='store_true', help="R3GAN's grouped layers instead (GROUPED)")
    args = ap.parse_args()
    if args.grouped:
        return grouped_main(args.reps)
    impls = IMPLS
    figures = {}
    totals = dict.fromkeys(impls, 0.0)
    print(f'backend={jax.default_backend()} devices={jax.devices()}')
    print(f'{"layer":8s} {"kind":6s} {"input":>18s} ' + ' '.join(f'{i + " ms":>12s}' for i in impls) + '  auto')
    for group in args.layers.split(','):
        for layer in LAYERS[group]:
            name, kind, n, hwc, _, _, stride = layer[:7]
            t = time_layer(layer, impls, args.reps)
            auto = auto_impl(layer)
            print(f'{name:8s} {kind:6s} {str((n, *hwc)):>18s} ' + ' '.join(f'{t[i]:12.1f}' for i in impls)
                  + f'  {auto}', flush=True)
            for impl in impls:
                figures[f'{name}_{impl}_ms'] = round(t[impl], 2)
                totals[impl] += t[impl]
            figures[f'{name}_auto_ms'] = round(t[auto], 2)
            totals['auto'] = totals.get('auto', 0.0) + t[auto]
    for impl in (*impls, 'auto'):
        figures[f'total_{impl}_ms'] = round(totals[impl], 1)
    print(' '.join(f'{k}={v}' for k, v in figures.items()))


if __name__ == '__main__':
    cpu_runtime.configure_process()  # the settings training runs with
    main()
