"""Adaptive discriminator augmentation (ADA): Karras et al., "Training Generative Adversarial Networks
with Limited Data", NeurIPS 2020, as in their code (NVlabs/stylegan2-ada-pytorch, training/augment.py and
training/training_loop.py).

Every image D sees, real and generated, goes through the pipeline; each transform is applied to an
example with probability p, p moved every `data.ada_interval` steps by the overfitting heuristic
r_t = E[sign(D(real))] toward `data.ada_target` (0.6), by sign(r_t - target) * batch * interval /
(ada_kimg * 1000), so that p can go from 0 to 1 in ada_kimg thousand images; p >= 0 as there (no upper
clamp: above 1 every transform applies). p and the running sums live in the train state (STATE).

Pipelines (ADA_PIPELINES, the authors' names and probability multipliers of 1; transforms in their
order, with their ranges):
  blit  x-flip, 90-degree rotations, integer translation of up to 0.125 of the image (reflected);
        executed as an exact gather of pixels (the composed transform maps pixel centers to pixel
        centers; reflect padding as theirs).
  color brightness (+N(0, 0.2)), contrast (x 2^N(0, 0.5)), luma flip, hue rotation (uniform over the
        circle) and saturation (x 2^N(0, 1)) around the luma axis, as one 4x4 matrix per example; on one
        channel the mean of its first three rows, and no hue or saturation (as theirs).
  geom  isotropic scaling (x 2^N(0, 0.2)), rotation before and after anisotropic scaling (uniform angle,
        each with probability 1 - sqrt(1 - p), so that one or both happen with probability p), anisotropic
        scaling (x 2^N(0, 0.2) in x, its inverse in y) and fractional translation (N(0, 0.125) of the image
        in x and y), composed into one inverse matrix per example and executed as theirs: reflect padding,
        2x upsampling with the sym6 wavelet lowpass, bilinear sampling (zero outside), 2x downsampling
        with the same filter (an orthogonal filter: with the identity matrix the image comes back to
        float rounding). Their padding depends on the batch's matrices (a data-dependent shape); here it is
        always the largest they take (their margin is clamped to the image size less one), which samples
        the same values (tests/test_ada_geometric.py compares with their procedure in PyTorch).
  bc    blit, then color; bgc: blit, geom, color (the paper's default). Their blit runs inside the geometric
        resampling when geom is on; here it runs first and exactly, which differs only near the border of
        an image shifted by both.
Example i's draws come from fold_in(key, example_ids[i]) (geom's from fold_in(fold_in(key, GEOM_DRAWS), i)),
so a batch split over devices draws the same numbers as the whole batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

XINT_MAX, BRIGHTNESS_STD, CONTRAST_STD, HUE_MAX, SATURATION_STD = 0.125, 0.2, 0.5, 1.0, 1.0
SCALE_STD, ROTATE_MAX, ANISO_STD, XFRAC_STD = 0.2, 1.0, 0.2, 0.125
ADA_PIPELINES = {"blit": ("blit",), "geom": ("geom",), "color": ("color",), "bc": ("blit", "color"),
                 "bg": ("blit", "geom"), "bgc": ("blit", "geom", "color")}
GEOM_DRAWS = 2**31 - 1  # the fold of the key for geom's draws: above every example id
# The sym6 wavelet's decomposition lowpass (their wavelets['sym6']), normalized to sum 1 (upfirdn2d.setup_filter).
SYM6 = np.array([0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
                 0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
                 -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148])
GEOM_FILTER = SYM6 / SYM6.sum()
FILTER_PAD = len(SYM6) // 4  # their Hz_pad
LUMA = np.array([1, 1, 1, 0], np.float32) / np.sqrt(3)  # the luma axis in homogeneous RGB


def parameters(key: jax.Array, example_ids: jax.Array, p: jax.Array, shape: tuple[int, int, int]) -> dict:
    """One example's draws for every transform, gated by p: {'xflip', 'rot90' (ints), 'shift' (2,) int
    pixels (dx, dy), 'brightness', 'contrast', 'lumaflip', 'hue', 'saturation'}, each (N, ...)."""
    h, w, _ = shape

    def one(i):
        k = jax.random.split(jax.random.fold_in(key, i), 16)
        gate = lambda j: jax.random.uniform(k[j]) < p  # noqa: E731
        u = lambda j, s=(): jax.random.uniform(k[j], s)  # noqa: E731
        n = lambda j: jax.random.normal(k[j])  # noqa: E731
        t = (u(4, (2,)) * 2 - 1) * XINT_MAX
        return {
            "xflip": jnp.where(gate(0), jnp.floor(u(1) * 2), 0.0).astype(jnp.int32),
            "rot90": jnp.where(gate(2), jnp.floor(u(3) * 4), 0.0).astype(jnp.int32),
            "shift": jnp.where(gate(5), jnp.round(t * jnp.array([w, h])), 0.0).astype(jnp.int32),
            "brightness": jnp.where(gate(6), n(7) * BRIGHTNESS_STD, 0.0),
            "contrast": jnp.where(gate(8), jnp.exp2(n(9) * CONTRAST_STD), 1.0),
            "lumaflip": jnp.where(gate(10), jnp.floor(u(11) * 2), 0.0),
            "hue": jnp.where(gate(12), (u(13) * 2 - 1) * jnp.pi * HUE_MAX, 0.0),
            "saturation": jnp.where(gate(14), jnp.exp2(n(15) * SATURATION_STD), 1.0),
        }

    out = jax.vmap(one)(example_ids)
    return {**out, **geometric_parameters(jax.random.fold_in(key, GEOM_DRAWS), example_ids, p)}


def geometric_parameters(key: jax.Array, example_ids: jax.Array, p: jax.Array) -> dict:
    """geom's draws, gated: {'scale', 'rotate_pre', 'aniso', 'rotate_post'} (N,) and 'xfrac' (N, 2), a fraction
    of the image (x, y)."""
    p_rot = 1 - jnp.sqrt(jnp.clip(1 - p, 0, 1))  # P(pre or post) = p

    def one(i):
        k = jax.random.split(jax.random.fold_in(key, i), 10)
        gate = lambda j, q=p: jax.random.uniform(k[j]) < q  # noqa: E731
        angle = lambda j: (jax.random.uniform(k[j]) * 2 - 1) * jnp.pi * ROTATE_MAX  # noqa: E731
        return {"scale": jnp.where(gate(0), jnp.exp2(jax.random.normal(k[1]) * SCALE_STD), 1.0),
                "rotate_pre": jnp.where(gate(2, p_rot), angle(3), 0.0),
                "aniso": jnp.where(gate(4), jnp.exp2(jax.random.normal(k[5]) * ANISO_STD), 1.0),
                "rotate_post": jnp.where(gate(6, p_rot), angle(7), 0.0),
                "xfrac": jnp.where(gate(8), jax.random.normal(k[9], (2,)) * XFRAC_STD, 0.0)}

    return jax.vmap(one)(example_ids)


def _reflect(i: jax.Array, n: int) -> jax.Array:
    """Index i of a row of n pixels, reflected at both ends without repeating the edge ('reflect' padding)."""
    if n == 1:
        return jnp.zeros_like(i)
    period = 2 * (n - 1)
    i = jnp.mod(i, period)
    return jnp.where(i > n - 1, period - i, i)


def blit(x: jax.Array, prm: dict) -> jax.Array:
    """x (N, H, W, C): output pixel q (centered coordinates) reads input G_inv q, with G_inv = flip^-1 @
    rot90^-1 @ translate^-1 composed as theirs (x-flip, then rotation by pi/2 * k, then translation)."""
    n, h, w, _ = x.shape
    cx, cy = (w - 1) / 2, (h - 1) / 2
    oy, ox = jnp.meshgrid(jnp.arange(h) - cy, jnp.arange(w) - cx, indexing="ij")

    def one(image, flip, k, shift):
        sx, sy = ox - shift[0], oy - shift[1]  # translate2d_inv: q - t
        # rotate2d_inv(-pi/2 k) = rotate2d(pi/2 k): (x, y) -> (x cos - y sin, x sin + y cos), exact for integer k
        cos, sin = jnp.array([1, 0, -1, 0])[k], jnp.array([0, 1, 0, -1])[k]
        rx, ry = sx * cos - sy * sin, sx * sin + sy * cos
        rx = jnp.where(flip == 1, -rx, rx)  # scale2d_inv(-1, 1)
        col = _reflect(jnp.round(rx + cx).astype(jnp.int32), w)
        row = _reflect(jnp.round(ry + cy).astype(jnp.int32), h)
        return image[row, col]

    return jax.vmap(one)(x, prm["xflip"], prm["rot90"], prm["shift"])


def color_matrices(prm: dict) -> jax.Array:
    """(N, 4, 4): C = saturation @ hue @ lumaflip @ contrast @ brightness (applied in that order)."""
    v = jnp.asarray(LUMA)
    vv, eye = jnp.outer(v, v), jnp.eye(4)

    def one(b, c, flip, theta, s):
        m = eye.at[:3, 3].set(b)  # translate3d(b, b, b)
        m = jnp.diag(jnp.array([c, c, c, 1.0])) @ m
        m = (eye - 2 * vv * flip) @ m  # Householder reflection through the plane normal to the luma axis
        sn, cs = jnp.sin(theta), jnp.cos(theta)
        vx, vy, vz = v[0], v[1], v[2]
        rot = jnp.array([[vx * vx * (1 - cs) + cs, vx * vy * (1 - cs) - vz * sn, vx * vz * (1 - cs) + vy * sn, 0],
                         [vy * vx * (1 - cs) + vz * sn, vy * vy * (1 - cs) + cs, vy * vz * (1 - cs) - vx * sn, 0],
                         [vz * vx * (1 - cs) - vy * sn, vz * vy * (1 - cs) + vx * sn, vz * vz * (1 - cs) + cs, 0],
                         [0, 0, 0, 1]])
        m = rot @ m
        return (vv + (eye - vv) * s) @ m

    return jax.vmap(one)(prm["brightness"], prm["contrast"], prm["lumaflip"], prm["hue"], prm["saturation"])


def color(x: jax.Array, prm: dict) -> jax.Array:
    """x (N, H, W, C), C = 3 (RGB) or 1 (luma only: hue and saturation left out, as theirs)."""
    channels = x.shape[-1]
    if channels == 1:
        prm = {**prm, "hue": jnp.zeros_like(prm["hue"]), "saturation": jnp.ones_like(prm["saturation"])}
    m = color_matrices(prm)
    if channels == 3:
        return jnp.einsum("nij,nhwj->nhwi", m[:, :3, :3], x) + m[:, None, None, :3, 3]
    if channels == 1:
        mean = m[:, :3, :].mean(axis=1)  # (N, 4)
        return x * mean[:, None, None, :3].sum(-1, keepdims=True) + mean[:, None, None, 3:]
    raise ValueError(f"ADA's color transforms take RGB or one-channel images, not {channels} channels")


def _matrix(rows) -> jax.Array:
    return jnp.stack([jnp.stack([jnp.asarray(v, jnp.float32) for v in row]) for row in rows])


def _scale(sx, sy) -> jax.Array:
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]])


def _translate(tx, ty) -> jax.Array:
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]])


def _rotate(theta) -> jax.Array:
    return _matrix([[jnp.cos(theta), -jnp.sin(theta), 0], [jnp.sin(theta), jnp.cos(theta), 0], [0, 0, 1]])


def geometric_matrices(prm: dict, height: int, width: int) -> jax.Array:
    """(N, 3, 3) inverse transforms, output pixel -> input pixel in centered pixel coordinates, composed as
    theirs: scale^-1 @ rotate(pre) @ aniso^-1 @ rotate(post) @ translate^-1."""
    def one(s, pre, a, post, t):
        return (_scale(1 / s, 1 / s) @ _rotate(pre) @ _scale(1 / a, a) @ _rotate(post)
                @ _translate(-t[0] * width, -t[1] * height))

    return jax.vmap(one)(prm["scale"], prm["rotate_pre"], prm["aniso"], prm["rotate_post"], prm["xfrac"])


def _upsample_axis(x: jax.Array, axis: int) -> jax.Array:
    """upfirdn2d.upsample2d along one axis: zeros between samples, padding (6, 5), convolution with 2 f."""
    x = jnp.moveaxis(x, axis, -1)
    n, taps = x.shape[-1], len(GEOM_FILTER)
    z = jnp.stack([x, jnp.zeros_like(x)], -1).reshape(*x.shape[:-1], 2 * n)
    z = jnp.pad(z, [(0, 0)] * (z.ndim - 1) + [((taps + 1) // 2, (taps - 2) // 2)])
    f = 2 * GEOM_FILTER[::-1]  # a convolution: the correlation with the flipped filter
    out = sum(np.float32(f[k]) * z[..., k:k + 2 * n] for k in range(taps))
    return jnp.moveaxis(out, -1, axis)


def _downsample_axis(x: jax.Array, axis: int) -> jax.Array:
    """upfirdn2d.downsample2d(down=2, padding=-2 FILTER_PAD, flip_filter=True) along one axis: one sample
    cropped at each end, correlation with f, every other sample."""
    x = jnp.moveaxis(x, axis, -1)[..., 1:-1]
    taps = len(GEOM_FILTER)
    out = sum(np.float32(GEOM_FILTER[k]) * x[..., k:x.shape[-1] - taps + 1 + k] for k in range(taps))
    return jnp.moveaxis(out[..., ::2], -1, axis)


def _grid_sample(image: jax.Array, theta: jax.Array, out_h: int, out_w: int) -> jax.Array:
    """torch's affine_grid + grid_sample (bilinear, zeros outside, align_corners=False) of one image (H, W, C)
    with theta (2, 3) in normalized coordinates."""
    in_h, in_w = image.shape[:2]
    yo, xo = jnp.meshgrid((2 * jnp.arange(out_h) + 1) / out_h - 1, (2 * jnp.arange(out_w) + 1) / out_w - 1,
                          indexing="ij")
    xn = theta[0, 0] * xo + theta[0, 1] * yo + theta[0, 2]
    yn = theta[1, 0] * xo + theta[1, 1] * yo + theta[1, 2]
    ix, iy = ((xn + 1) * in_w - 1) / 2, ((yn + 1) * in_h - 1) / 2
    x0, y0 = jnp.floor(ix), jnp.floor(iy)
    out = 0.0
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        xi, yi = x0 + dx, y0 + dy
        weight = (1 - jnp.abs(ix - xi)) * (1 - jnp.abs(iy - yi))
        inside = (xi >= 0) & (xi <= in_w - 1) & (yi >= 0) & (yi <= in_h - 1)
        pixel = image[jnp.clip(yi, 0, in_h - 1).astype(jnp.int32), jnp.clip(xi, 0, in_w - 1).astype(jnp.int32)]
        out = out + jnp.where(inside, weight, 0.0)[..., None] * pixel
    return out


def geometric(x: jax.Array, prm: dict) -> jax.Array:
    """x (N, H, W, C) through each example's geometric transform (module docstring)."""
    n, h, w, _ = x.shape
    g = geometric_matrices(prm, h, w)
    x = jnp.pad(x, ((0, 0), (h - 1, h - 1), (w - 1, w - 1), (0, 0)), mode="reflect")  # symmetric: no recentering
    x = _upsample_axis(_upsample_axis(x, 1), 2)
    g = _scale(2, 2) @ g @ _scale(0.5, 0.5)
    g = _translate(-0.5, -0.5) @ g @ _translate(0.5, 0.5)
    out_h, out_w = (h + 2 * FILTER_PAD) * 2, (w + 2 * FILTER_PAD) * 2
    g = _scale(2 / x.shape[2], 2 / x.shape[1]) @ g @ _scale(out_w / 2, out_h / 2)
    x = jax.vmap(lambda image, m: _grid_sample(image, m[:2], out_h, out_w))(x, g)
    return _downsample_axis(_downsample_axis(x, 1), 2)


GROUPS = {"blit": blit, "geom": geometric, "color": color}


def augment(x: jax.Array, key: jax.Array, example_ids: jax.Array, p: jax.Array, pipeline: str) -> jax.Array:
    """x (N, H, W, C) in model range through the pipeline's groups, each transform with probability p."""
    prm = parameters(key, example_ids, p, x.shape[1:])
    for group in ADA_PIPELINES[pipeline]:
        x = GROUPS[group](x, prm)
    return x


# --- the train state's part and its update ------------------------------------------------------

# ADA's entry in D's batch statistics (objectives/gan.py D_STATE_ENTRIES: it travels with them to every D
# forward, so that the probability reaches each without another argument).
STATE = "ada"


def initial_state() -> dict:
    """p = 0 and the sums of the current interval: of E[sign(D(real))] per D update, and of D updates."""
    return {name: jnp.zeros((), jnp.float32) for name in ("p", "sign_sum", "updates")}


def accumulated(state: dict, real_sign_mean: jax.Array) -> dict:
    """After a D update whose real batch had mean sign(D(real)) = real_sign_mean (the global batch's)."""
    return {**state, "sign_sum": state["sign_sum"] + real_sign_mean, "updates": state["updates"] + 1}


def adjusted(state: dict, step: jax.Array, interval: int, batch_size: int, target: jax.Array,
             kimg: float) -> dict:
    """At the end of step `step` (0-based): every `interval` steps, p += sign(r_t - target) * batch *
    interval / (kimg * 1000) with r_t the interval's mean sign, p >= 0, and the sums reset."""
    due = (step + 1) % interval == 0
    r_t = state["sign_sum"] / jnp.maximum(state["updates"], 1.0)
    p = jnp.maximum(state["p"] + jnp.sign(r_t - target) * batch_size * interval / (kimg * 1000.0), 0.0)
    zero = jnp.zeros((), jnp.float32)
    return {"p": jnp.where(due, p, state["p"]), "sign_sum": jnp.where(due, zero, state["sign_sum"]),
            "updates": jnp.where(due, zero, state["updates"])}
