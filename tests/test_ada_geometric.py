"""ADA's general geometric group (ops/ada.py geometric) against the authors' procedure
(NVlabs/stylegan2-ada-pytorch, training/augment.py), rewritten here in PyTorch with its own padding,
affine_grid and grid_sample and their batch-dependent margin; the identity comes back (the sym6 filter is
orthogonal); a shift by whole pixels through the resampling equals the exact blit's; the matrices compose
as theirs (float64 numpy); the draws' distributions match the paper's ranges."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.ops import ada

torch = pytest.importorskip("torch", reason="the reference runs in PyTorch (the fid-test extra installs it)")
F = torch.nn.functional


def _identity(n: int) -> dict:
    one = jnp.ones((n,))
    return {"scale": one, "rotate_pre": 0 * one, "aniso": one, "rotate_post": 0 * one, "xfrac": jnp.zeros((n, 2))}


def _images(n=4, h=12, w=10, c=3, seed=0):
    return np.random.RandomState(seed).uniform(-1, 1, (n, h, w, c)).astype(np.float32)


def _upfirdn_1d(x, f, up, down, pad0, pad1, gain, flip, dim):
    """upfirdn2d's reference semantics along one spatial dim of NCHW x (float64)."""
    if up > 1:
        shape = list(x.shape)
        z = torch.zeros(*shape[:dim], shape[dim] * up, *shape[dim + 1:], dtype=x.dtype)
        index = [slice(None)] * x.ndim
        index[dim] = slice(0, None, up)
        z[tuple(index)] = x
        x = z
    pads = [0, 0, 0, 0]
    pads[0 if dim == 3 else 2], pads[1 if dim == 3 else 3] = max(pad0, 0), max(pad1, 0)
    x = F.pad(x, pads)
    index = [slice(None)] * x.ndim
    index[dim] = slice(max(-pad0, 0), x.shape[dim] - max(-pad1, 0))
    x = x[tuple(index)]
    k = torch.as_tensor(f * gain, dtype=x.dtype)
    k = k if flip else k.flip(0)
    c = x.shape[1]
    weight = k.view(1, 1, 1, -1) if dim == 3 else k.view(1, 1, -1, 1)
    x = F.conv2d(x, weight.repeat(c, 1, 1, 1), groups=c)
    index = [slice(None)] * x.ndim
    index[dim] = slice(0, None, down)
    return x[tuple(index)]


def _reference(x, g_inv):
    """Their geometric execution (augment.py, 'Execute geometric transformations') in float64 PyTorch:
    x (N, H, W, C), g_inv (N, 3, 3)."""
    images = torch.as_tensor(np.asarray(x, np.float64)).permute(0, 3, 1, 2)
    g = torch.as_tensor(np.asarray(g_inv, np.float64))
    n, _, h, w = images.shape
    f = ada.GEOM_FILTER
    hz_pad = len(f) // 4
    cx, cy = (w - 1) / 2, (h - 1) / 2
    cp = torch.tensor([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]], dtype=torch.float64)
    cp = g @ cp.t()
    margin = cp[:, :2, :].permute(1, 0, 2).flatten(1)
    margin = torch.cat([-margin, margin]).max(dim=1).values
    margin = margin + torch.tensor([hz_pad * 2 - cx, hz_pad * 2 - cy] * 2, dtype=torch.float64)
    margin = margin.max(torch.zeros(4, dtype=torch.float64))
    margin = margin.min(torch.tensor([w - 1, h - 1] * 2, dtype=torch.float64))
    mx0, my0, mx1, my1 = (int(v) for v in margin.ceil())
    images = F.pad(images, [mx0, mx1, my0, my1], mode="reflect")

    def mat(rows):
        return torch.tensor(rows, dtype=torch.float64)

    g = mat([[1, 0, (mx0 - mx1) / 2], [0, 1, (my0 - my1) / 2], [0, 0, 1]]) @ g
    for dim, (p0, p1) in ((3, (6, 5)), (2, (6, 5))):
        images = _upfirdn_1d(images, f, 2, 1, p0, p1, 2.0, False, dim)
    g = mat([[2, 0, 0], [0, 2, 0], [0, 0, 1]]) @ g @ mat([[0.5, 0, 0], [0, 0.5, 0], [0, 0, 1]])
    g = mat([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]]) @ g @ mat([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    shape = [n, images.shape[1], (h + hz_pad * 2) * 2, (w + hz_pad * 2) * 2]
    g = (mat([[2 / images.shape[3], 0, 0], [0, 2 / images.shape[2], 0], [0, 0, 1]]) @ g
         @ mat([[shape[3] / 2, 0, 0], [0, shape[2] / 2, 0], [0, 0, 1]]))
    grid = F.affine_grid(theta=g[:, :2, :], size=shape, align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    for dim in (3, 2):
        images = _upfirdn_1d(images, f, 1, 2, -1, -1, 1.0, True, dim)
    return images.permute(0, 2, 3, 1).numpy()


def test_the_identity_comes_back():
    x = _images()
    out = jax.jit(ada.geometric)(jnp.asarray(x), _identity(len(x)))
    np.testing.assert_allclose(np.asarray(out), x, atol=2e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_their_procedure_in_pytorch(seed):
    """Strong draws (p = 1), each example its own transform, on a non-square image."""
    x = _images(n=6, seed=seed)
    prm = ada.geometric_parameters(jax.random.PRNGKey(seed), jnp.arange(6), jnp.float32(1.0))
    assert np.all(np.asarray(prm["scale"]) != 1) and np.all(np.asarray(prm["xfrac"]) != 0)
    got = np.asarray(jax.jit(ada.geometric)(jnp.asarray(x), prm))
    expected = _reference(x, ada.geometric_matrices(prm, 12, 10))
    np.testing.assert_allclose(got, expected, atol=2e-4)
    assert np.abs(got - x).max() > 0.5  # the transforms did move the images


def test_a_pixel_shift_equals_the_exact_blit():
    """A translation by whole pixels through the resampling is the exact one (the filter is orthogonal and
    shift-invariant); rotations are not, as theirs: sym6 is asymmetric, so a turned image meets its filter
    reversed."""
    x = _images(n=2, h=10, w=10)
    shift = {**_identity(2), "xfrac": jnp.tile(jnp.array([[2 / 10, -1 / 10]]), (2, 1))}
    blit_shift = {"xflip": jnp.zeros(2, jnp.int32), "rot90": jnp.zeros(2, jnp.int32),
                  "shift": jnp.tile(jnp.array([[2, -1]], jnp.int32), (2, 1))}
    got, exact = (np.asarray(f(jnp.asarray(x), p)) for f, p in ((ada.geometric, shift), (ada.blit, blit_shift)))
    np.testing.assert_allclose(got[:, 2:-2, 2:-2], exact[:, 2:-2, 2:-2], atol=2e-4)  # the border reflects differently
    assert np.abs(got - x).max() > 0.5


def test_the_matrices_compose_as_theirs():
    """float64 numpy, their helpers' order: G_inv = scale2d_inv(s, s) @ rotate2d_inv(-pre) @ scale2d_inv(a, 1/a)
    @ rotate2d_inv(-post) @ translate2d_inv(tx W, ty H), rotate2d(t) = [[cos t, -sin t], [sin t, cos t]]."""
    prm = jax.device_get(ada.geometric_parameters(jax.random.PRNGKey(3), jnp.arange(5), jnp.float32(1.0)))

    def rotate2d(t):
        return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])

    def scale2d_inv(sx, sy):
        return np.diag([1 / sx, 1 / sy, 1.0])

    for i in range(5):
        tx, ty = prm["xfrac"][i] * np.array([10, 12])
        g = (scale2d_inv(prm["scale"][i], prm["scale"][i]) @ rotate2d(prm["rotate_pre"][i])
             @ scale2d_inv(prm["aniso"][i], 1 / prm["aniso"][i]) @ rotate2d(prm["rotate_post"][i])
             @ np.array([[1, 0, -tx], [0, 1, -ty], [0, 0, 1]]))
        np.testing.assert_allclose(np.asarray(ada.geometric_matrices(prm, 12, 10))[i], g, rtol=1e-5, atol=1e-5)


def test_the_draws_follow_the_paper():
    n = 20_000
    prm = jax.device_get(ada.geometric_parameters(jax.random.PRNGKey(0), jnp.arange(n), jnp.float32(0.5)))
    moved = np.asarray(prm["scale"]) != 1
    assert abs(moved.mean() - 0.5) < 0.02
    assert abs(np.log2(prm["scale"][moved]).std() - ada.SCALE_STD) < 0.01
    rotated = (prm["rotate_pre"] != 0) | (prm["rotate_post"] != 0)
    assert abs(rotated.mean() - 0.5) < 0.02  # pre or post with probability p
    assert abs(np.abs(prm["rotate_pre"][prm["rotate_pre"] != 0]).max() - np.pi) < 0.01
    shifted = np.any(prm["xfrac"] != 0, axis=1)
    assert abs(prm["xfrac"][shifted].std() - ada.XFRAC_STD) < 0.005


def test_the_bgc_pipeline_trains_and_is_the_identity_up_to_rounding_at_p_zero():
    """In the step (the small GAN of tests/test_steps.py, 8x8 images): at p = 0 D sees its inputs
    (geom still resamples them, to float rounding, as theirs), at p = 1 other ones."""
    from test_steps import _builder, _fixed_batch

    _, builder = _builder(data__ada_target=0.6, data__ada_pipeline="bgc", data__ada_interval=1, data__ada_kimg=0.16)
    _, plain = _builder()
    start, batch = builder.init_state(0), _fixed_batch()
    reference = float(jax.jit(plain.train_step)(plain.init_state(0), batch)[1]["d_real"])

    def d_real(p):
        d = dict(start.batch_stats["discriminator"])
        d[ada.STATE] = {**d[ada.STATE], "p": jnp.float32(p)}
        state, metrics = jax.jit(builder.train_step)(start.replace(batch_stats={**start.batch_stats,
                                                                                "discriminator": d}), batch)
        assert bool(metrics["finite"])
        return float(metrics["d_real"])

    assert d_real(0.0) == pytest.approx(reference, abs=1e-5)
    assert abs(d_real(1.0) - reference) > 1e-4
