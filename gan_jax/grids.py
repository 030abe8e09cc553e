"""Pictures of samples: an 8x8 grid PNG of images (for a class-conditional run one row per class), a
scatter of 2D points over the real data, and the grid of a training step (samples/step_XXXXXXX.png)."""

import contextlib
import math
import os

import jax
import numpy as np
from PIL import Image, ImageDraw

from gan_jax import disk
from gan_jax.data.synthetic import sample_mixture
from gan_jax.experiment import Experiment


def to_uint8(images: np.ndarray, unit_range: bool = False) -> np.ndarray:
    """Model-range images ([-1, 1], or [0, 1] with unit_range: Experiment.unit_range), (N, H, W, C) ->
    uint8 (N, H, W, C)."""
    x = np.asarray(images, np.float32)
    if not unit_range:
        x = (x + 1.0) / 2.0
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def grid(images_u8: np.ndarray, columns: int = 8, pad: int = 2) -> np.ndarray:
    """(N, H, W, C) uint8 -> one (rows * (H + pad) + pad, columns * (W + pad) + pad, C) image."""
    n, h, w, c = images_u8.shape
    rows = math.ceil(n / columns)
    out = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, col = divmod(i, columns)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + col * (w + pad):pad + col * (w + pad) + w] = images_u8[i]
    return out


COLUMNS = 8  # images per row of a grid
GRID_CLASSES = 20  # rows of a class-conditional grid at most (its first classes)


def by_class(images_u8: np.ndarray, labels: np.ndarray, columns: int = COLUMNS,
             max_rows: int = GRID_CLASSES) -> np.ndarray:
    """Images (N, H, W, C) uint8 of classes `labels` (N,) laid out for `grid(..., columns)` with one row
    per class present (in class order, the first max_rows): each class's first `columns` images, white
    cells where it has fewer."""
    classes = np.unique(labels)[:max_rows]
    out = np.full((len(classes) * columns, *images_u8.shape[1:]), 255, np.uint8)
    for row, c in enumerate(classes):
        mine = images_u8[labels == c][:columns]
        out[row * columns:row * columns + len(mine)] = mine
    return out


def save_grid(path: str, images_u8: np.ndarray, columns: int = COLUMNS, scale: int = 2) -> None:
    g = grid(images_u8, columns)
    image = Image.fromarray(g[..., 0] if g.shape[-1] == 1 else g)
    image.resize((image.width * scale, image.height * scale), Image.NEAREST).save(path)


def save_scatter(path: str, points: np.ndarray, real_points: np.ndarray, size: int = 512,
                 extent: float | None = None) -> None:
    """Generated points (red) over real points (grey), (N, 2) each, in a square of half-width `extent`."""
    if extent is None:
        extent = 1.2 * float(np.abs(real_points).max())
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    to_pixel = lambda p: ((p[0] / extent + 1) * size / 2, (1 - p[1] / extent) * size / 2)
    for pts, colour in ((real_points, (150, 150, 150)), (points, (220, 30, 30))):
        for p in np.asarray(pts):
            x, y = to_pixel(p)
            draw.ellipse((x - 1.5, y - 1.5, x + 1.5, y + 1.5), fill=colour)
    image.save(path)


def write_samples(exp: Experiment, state, workdir: str, step: int, is_writer: bool) -> str:
    """samples/step_XXXXXXX.png: an 8x8 grid from the fixed latents, or a scatter over the real points;
    for a class-conditional run one row per class (the first GRID_CLASSES), the same COLUMNS fixed
    latents in every row. Returns its path ('' on processes other than 0, which draw the samples but
    write nothing)."""
    n = 1000 if exp.dataset.mixture is not None else 64
    labels = None
    if exp.cfg.model.num_classes:
        classes = min(exp.cfg.model.num_classes, GRID_CLASSES)
        labels = np.repeat(np.arange(classes, dtype=np.int32), COLUMNS)
        generated = exp.sample(state, len(labels), labels=labels,
                               z=np.tile(np.asarray(exp.fixed_latents(COLUMNS)), (classes, 1)))
    else:
        generated = exp.sample(state, n)
    if not is_writer:
        return ""
    path = os.path.join(workdir, "samples", f"step_{step:07d}.png")
    try:
        with disk.writing(f"writing {path}"):
            if exp.dataset.mixture is not None:
                real = np.asarray(sample_mixture(exp.dataset.mixture, jax.random.PRNGKey(0), 1000))
                save_scatter(path, generated, real)
            elif labels is not None:
                save_grid(path, by_class(to_uint8(generated, exp.unit_range), labels))
            else:
                save_grid(path, to_uint8(generated, exp.unit_range))
    except disk.DiskFull:
        with contextlib.suppress(OSError):
            os.remove(path)  # a cut PNG would be drawn into progress.gif and the report
        raise
    return path
