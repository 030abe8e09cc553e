"""The pictures of a run's networks that researchers look at instead of numbers, drawn by
`launch.py --mode=report` from the newest checkpoint into DIR/pictures/ (report.PICTURES) and shown in
report.html: latent interpolations, the VAE's (and VAE-GAN's) reconstructions and the decoded manifold of
a 2-D latent space. A picture that does not apply to the run (reconstructions of a GAN, the manifold of a
16-D latent space, any picture of a run without a checkpoint) is not drawn.

    python launch.py --mode=report --workdir runs/vae_mnist   # DIR/pictures/*.png, then report.html"""

import sys

import jax
import numpy as np

from gan_jax import data, disk, keys, parallel, report
from gan_jax.errors import UserError
from gan_jax.experiment import Experiment
from gan_jax.grids import save_grid, to_uint8
from gan_jax.objectives.base import to_model_range

INTERPOLATION_ROWS = 8  # latent pairs, one a row
INTERPOLATION_STEPS = 10  # images a row, both ends included
RECONSTRUCTIONS = 32  # the first test images of the eval split, each beside its reconstruction
MANIFOLD_SIDE = 20  # the 2-D manifold: MANIFOLD_SIDE x MANIFOLD_SIDE decoded latents


def slerp(z0: np.ndarray, z1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation (Shoemake 1985; for latents, White 2016): z0, z1 (..., L), t (T,) ->
    (..., T, L) = sin((1 - t) w) / sin w z0 + sin(t w) / sin w z1, w the angle between z0 and z1; float64.
    The ends are z0 and z1; unit vectors stay unit; (nearly) parallel pairs fall back to linear
    interpolation, the limit of the formula as w -> 0."""
    z0, z1 = np.asarray(z0, np.float64)[..., None, :], np.asarray(z1, np.float64)[..., None, :]
    t = np.asarray(t, np.float64)[:, None]
    norms = np.linalg.norm(z0, axis=-1, keepdims=True) * np.linalg.norm(z1, axis=-1, keepdims=True)
    cosine = np.clip(np.sum(z0 * z1, axis=-1, keepdims=True) / np.maximum(norms, 1e-300), -1.0, 1.0)
    omega = np.arccos(cosine)
    sin_omega = np.sin(omega)
    parallel_pair = sin_omega < 1e-7
    safe = np.where(parallel_pair, 1.0, sin_omega)
    spherical = (np.sin((1 - t) * omega) * z0 + np.sin(t * omega) * z1) / safe
    return np.where(parallel_pair, (1 - t) * z0 + t * z1, spherical)


def interpolation_latents(seed: int, latent_dim: int, rows: int = INTERPOLATION_ROWS,
                          steps: int = INTERPOLATION_STEPS) -> np.ndarray:
    """(rows * steps, latent_dim) float32: row r the slerp between the r-th fixed N(0, I) pair of a key
    of (seed, keys.INTERPOLATIONS), the same for every report of the run."""
    key = jax.random.fold_in(jax.random.PRNGKey(seed), keys.INTERPOLATIONS)
    pairs = np.asarray(jax.random.normal(key, (rows, 2, latent_dim)), np.float64)
    return slerp(pairs[:, 0], pairs[:, 1], np.linspace(0.0, 1.0, steps)).reshape(-1, latent_dim).astype(np.float32)


def manifold_latents(side: int = MANIFOLD_SIDE) -> np.ndarray:
    """(side * side, 2) float32: the N(0, I) quantiles (i + 1/2) / side of each axis (Kingma & Welling
    2013, figure 4), row by row from the top: z_2 decreasing down the rows, z_1 increasing along them."""
    from scipy.special import ndtri

    q = ndtri((np.arange(side) + 0.5) / side)
    z1, z2 = np.meshgrid(q, q[::-1])
    return np.stack([z1.ravel(), z2.ravel()], axis=1).astype(np.float32)


def _save(path: str, images_u8: np.ndarray, columns: int) -> str:
    with disk.replacing(path, ".png") as tmp:
        save_grid(tmp, images_u8, columns)
    return path


def _generates_images(exp: Experiment) -> bool:
    return exp.objective.generates and exp.dataset.mixture is None


def _row_labels(exp: Experiment, num: int, columns: int) -> np.ndarray | None:
    """A class-conditional run's labels (num,) for a grid of `columns`: row r is of class r mod K; None
    for an unconditional run."""
    k = exp.cfg.model.num_classes
    return (np.arange(num) // columns % k).astype(np.int32) if k else None


def write_interpolations(exp: Experiment, state, workdir: str) -> str | None:
    """interpolations.png: INTERPOLATION_ROWS rows of INTERPOLATION_STEPS images along a slerp; None for
    runs that generate no images."""
    if not _generates_images(exp):
        return None
    z = interpolation_latents(exp.seed, exp.cfg.model.latent_dim)
    images = to_uint8(exp.generate(state, z, _row_labels(exp, len(z), INTERPOLATION_STEPS)), exp.unit_range)
    return _save(report.picture_path(workdir, "interpolations.png"), images, INTERPOLATION_STEPS)


def write_manifold(exp: Experiment, state, workdir: str) -> str | None:
    """manifold.png: the images decoded from manifold_latents(); None unless the run generates images
    from a 2-D latent space."""
    if not _generates_images(exp) or exp.cfg.model.latent_dim != 2:
        return None
    z = manifold_latents()
    images = to_uint8(exp.generate(state, z, _row_labels(exp, len(z), MANIFOLD_SIDE)), exp.unit_range)
    return _save(report.picture_path(workdir, "manifold.png"), images, MANIFOLD_SIDE)


def reconstruction_inputs(exp: Experiment, images_u8: np.ndarray) -> np.ndarray:
    """Test images as the model reads them, in model range: binarized once (vae_metrics.binarize_once,
    as the VAE's likelihood evaluation) where the run trains on binarized data."""
    if exp.dataset.binarize:
        from gan_jax.evaluate.vae_metrics import binarize_once

        return binarize_once(images_u8, exp.seed)
    return np.asarray(to_model_range(images_u8, exp.unit_range))


def write_reconstructions(exp: Experiment, state, workdir: str) -> str | None:
    """reconstructions.png: the first RECONSTRUCTIONS images of the eval split as the model reads them,
    each followed by the decoding of its posterior mean (8 pairs a row); None without an encoder."""
    encode = exp.builder.encode_fn()
    if encode is None:
        return None
    cfg = exp.cfg
    images, _ = data.load_arrays(cfg.data.name, cfg.data.eval_split, cfg.data.source, cfg.data.dir,
                                 tfds_dir=cfg.data.get("tfds_dir"))
    x = reconstruction_inputs(exp, images[:RECONSTRUCTIONS])
    mean = jax.jit(encode, out_shardings=parallel.replicated(exp.mesh))(state, parallel.host_replicated(x, exp.mesh))
    reconstructed = exp.generate(state, np.asarray(mean))
    pairs = np.stack([to_uint8(x, exp.unit_range), to_uint8(reconstructed, exp.unit_range)], axis=1)
    return _save(report.picture_path(workdir, "reconstructions.png"), pairs.reshape(-1, *pairs.shape[2:]), 16)


def write_pictures(workdir: str) -> list[str]:
    """Every picture of the networks that applies to the run in `workdir`, from its newest checkpoint;
    returns their paths. Without a checkpoint none (said on stderr)."""
    from gan_jax.sampling import restore

    try:
        exp, _, state = restore(workdir, None)
    except UserError as e:
        print(f"pictures: none from the networks ({e})", file=sys.stderr, flush=True)
        return []
    written = [draw(exp, state, workdir) for draw in (write_interpolations, write_reconstructions, write_manifold)]
    return [p for p in written if p]
