"""Output sizes of convolutions with explicit (lo, hi) pads, as lax computes them."""

from __future__ import annotations

from collections.abc import Sequence


def conv_out_size(in_size: Sequence[int], kernel_size: Sequence[int], strides: Sequence[int],
                  pads: Sequence[tuple[int, int]], dilation: Sequence[int]) -> list[int]:
    """Spatial output size of `lax.conv_general_dilated`."""
    return [
        (n + lo + hi - (k - 1) * d - 1) // s + 1
        for n, (lo, hi), k, d, s in zip(in_size, pads, kernel_size, dilation, strides, strict=True)
    ]


def conv_transpose_out_size(in_size: Sequence[int], kernel_size: Sequence[int], strides: Sequence[int],
                            pads: Sequence[tuple[int, int]], dilation: Sequence[int]) -> list[int]:
    """Spatial output size of `lax.conv_transpose`: the stride-dilated, padded input minus the
    dilated kernel."""
    return [
        (n - 1) * s + 1 + lo + hi - (k - 1) * d
        for n, (lo, hi), k, d, s in zip(in_size, pads, kernel_size, dilation, strides, strict=True)
    ]
