"""Image resizes that FID implementations differ in, each matched to its reference implementation
(tests/test_inception.py): 'legacy', pytorch-fid's bilinear `F.interpolate(align_corners=False)` without
antialiasing (clean-fid's mode 'legacy_pytorch'), and 'clean', clean-fid's (Parmar et al. 2022,
`cleanfid/resize.py`, mode 'clean'): each channel resized as a float32 image by PIL's bicubic filter
(a = -0.5), widened when downscaling (antialiased), clipped to the value range, not re-quantized to uint8.
Both are two matrix products, one per axis, on the device."""

import jax
import jax.numpy as jnp
import numpy as np


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float32 matrix of 1-D linear interpolation weights, torch's CPU align_corners=False
    rule in its float32 arithmetic: scale = float32(n_in) / n_out, source coordinate
    fma(scale, i + 0.5, -0.5) (one rounding, as torch's AVX2/AVX-512 kernels) clamped at 0, neighbours
    floor and min(floor + 1, n_in - 1), weights 1 - lambda and lambda rounded to float32. Identity when
    n_in == n_out. No antialiasing when downscaling (as F.interpolate without antialias=True)."""
    f32 = np.float32
    if n_in == n_out:
        return np.eye(n_in, dtype=f32)
    scale = f32(n_in) / f32(n_out)
    src = (np.float64(scale) * (np.arange(n_out, dtype=np.float64) + 0.5) - 0.5).astype(f32)  # exact, then rounded
    src = np.maximum(src, f32(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam1 = np.clip(src - i0.astype(f32), f32(0), f32(1))
    m = np.zeros((n_out, n_in), np.float64)
    rows = np.arange(n_out)
    np.add.at(m, (rows, i0), (f32(1) - lam1).astype(np.float64))
    np.add.at(m, (rows, i1), lam1.astype(np.float64))
    return m.astype(f32)


def resize_bilinear(images: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Bilinear resize of (N, H, W, C) images to (N, size[0], size[1], C), as
    `F.interpolate(x, size, mode='bilinear', align_corners=False)` (two interpolation matrices, along H
    then W, applied in float32 at full precision). A no-op when the size already matches."""
    _, h, w, _ = images.shape
    if (h, w) == tuple(size):
        return images
    hp = jax.lax.Precision.HIGHEST
    x = jnp.einsum("oh,nhwc->nowc", jnp.asarray(resize_matrix(h, size[0])), images, precision=hp)
    return jnp.einsum("pw,nowc->nopc", jnp.asarray(resize_matrix(w, size[1])), x, precision=hp)


def _pil_bicubic(x: np.ndarray) -> np.ndarray:
    """PIL's bicubic kernel (Resample.c `bicubic_filter`, a = -0.5) at float64 offsets x."""
    a, x = -0.5, np.abs(x)
    inner = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    outer = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1.0, inner, np.where(x < 2.0, outer, 0.0))


def pil_bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float64 matrix of PIL's 1-D bicubic resampling weights (Resample.c
    `precompute_coeffs`): output pixel i centred at (i + 0.5) * scale, scale = n_in / n_out; the kernel
    stretched by max(scale, 1) (antialiasing when downscaling), support 2 * max(scale, 1); taps
    [int(centre - support + 0.5), int(centre + support + 0.5)) clamped to the image, their weights
    normalized to sum 1. Identity when n_in == n_out (PIL copies the image)."""
    if n_in == n_out:
        return np.eye(n_in)
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support, inverse = 2.0 * filterscale, 1.0 / filterscale
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        centre = (i + 0.5) * scale
        lo, hi = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), n_in)
        w = _pil_bicubic((np.arange(lo, hi) - centre + 0.5) * inverse)
        m[i, lo:hi] = w / w.sum() if w.sum() != 0.0 else w
    return m


def resize_bicubic_pil(images: jax.Array, size: tuple[int, int]) -> jax.Array:
    """clean-fid's resize of (N, H, W, C) images in [0, 1] to (N, size[0], size[1], C): per channel,
    `Image.fromarray(channel, mode='F').resize((size[1], size[0]), Image.BICUBIC)` (along W, then along H,
    as PIL's two passes), clipped to [0, 1], kept in float32. PIL sums in float64; here the two matrix
    products run in float32 at full precision (within float32 rounding of PIL's result). A no-op when
    the size already matches."""
    _, h, w, _ = images.shape
    if (h, w) == tuple(size):
        return images
    hp = jax.lax.Precision.HIGHEST
    along_w, along_h = (jnp.asarray(pil_bicubic_matrix(n, s), jnp.float32) for n, s in ((w, size[1]), (h, size[0])))
    x = jnp.einsum("pw,nhwc->nhpc", along_w, images, precision=hp)
    return jnp.clip(jnp.einsum("oh,nhpc->nopc", along_h, x, precision=hp), 0.0, 1.0)


# The resizes of the FID Inception's input by name (eval.inception_resize, the scoring command's --resize):
# (images (N, H, W, C) float32 in [0, 1], (h, w)) -> (N, h, w, C).
RESIZES = {"legacy": resize_bilinear, "clean": resize_bicubic_pil}
DEFAULT_RESIZE = "legacy"  # FID's numbers as pytorch-fid (and this code before the choice) computes them
