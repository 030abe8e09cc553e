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
  bc    blit, then color.
The general geometric group (scaling, arbitrary rotation, anisotropy, fractional translation) needs
their wavelet-filtered resampling and is not here yet. Example i's draws come from
fold_in(key, example_ids[i]), so a batch split over devices draws the same numbers as the whole batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

XINT_MAX, BRIGHTNESS_STD, CONTRAST_STD, HUE_MAX, SATURATION_STD = 0.125, 0.2, 0.5, 1.0, 1.0
ADA_PIPELINES = {"blit": ("blit",), "color": ("color",), "bc": ("blit", "color")}
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


GROUPS = {"blit": blit, "color": color}


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
