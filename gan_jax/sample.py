"""`launch.py --mode=sample`: samples from a saved checkpoint, without training, streamed to
samples.npz, and a picture of the first ones; a class-conditional run's of the classes --labels asks
for, recorded beside them."""

import contextlib
import math
import os
import shutil

import jax
import ml_collections
import numpy as np

from gan_jax import grids, sampling, signals
from gan_jax.data.synthetic import sample_mixture
from gan_jax.errors import UserError
from gan_jax.npz_stream import NpzStreamWriter

GRID_IMAGES = 64  # the PNG's 8x8 grid
SCATTER_POINTS = 10_000  # more would only blot out the scatter, and take minutes to draw
# Beyond the samples: the zip and .npy headers (a few KiB), the PNG, and slack for other writers.
DISK_MARGIN_BYTES = 16 * 2**20


def check_disk_space(path: str, num_samples: int, bytes_per_sample: int) -> None:
    """Raises UserError unless `num_samples` samples of `bytes_per_sample` bytes each, plus
    DISK_MARGIN_BYTES, fit in the free space of the file system that holds the file `path`."""
    directory = os.path.dirname(path) or "."
    free = shutil.disk_usage(directory).free
    stale = NpzStreamWriter.temporary_path(path)
    if os.path.isfile(stale):  # a killed run's leftover, which this run's writer overwrites
        free += os.path.getsize(stale)
    need = num_samples * bytes_per_sample + DISK_MARGIN_BYTES
    if need > free:
        most = max(0, (free - DISK_MARGIN_BYTES) // bytes_per_sample)
        raise UserError(f"--num_samples={num_samples} needs {need / 1e9:.3g} GB for {os.path.basename(path)} in "
                        f"{directory} but only {free / 1e9:.3g} GB are free; accepted: at most {most} samples here")


def sample(workdir: str, num_samples: int, step: int | None = None,
           cfg: ml_collections.ConfigDict | None = None, labels: str | None = None) -> str:
    """Writes DIR/samples.npz (key 'images', uint8 NHWC; or 'points', float32 (N, 2)) and a picture
    samples_step_XXXXXXX.png (an 8x8 grid of the first images, or the first SCATTER_POINTS points
    over the real data). Samples come sampling.CHUNK at a time from keys folded from the seed, the
    step and the chunk index, so a run's first N samples are those of any run with more; they are
    streamed to disk, so the count is bounded by the free disk space (checked first), not by memory.
    A class-conditional run's samples are of the classes `labels` (--labels: '3', '0,1,2' or 'all', the
    default; sampling.class_cycle), recorded as 'labels' int32 (N,) in samples.npz, and its picture has
    a row per class; an unconditional run refuses --labels. Latents truncated by eval.truncation > 0
    (--truncation) are recorded as 'truncation' float32 (1,) and 'truncation_method' (1,) str."""
    if num_samples <= 0:
        raise UserError(f"--num_samples={num_samples} must be positive")
    exp, step, state = sampling.restore(workdir, step, cfg)
    cycle = sampling.class_cycle(exp.cfg.model.num_classes, labels, "--labels={!r}")
    points = exp.dataset.mixture is not None
    name, dtype = sampling.output_format(exp)
    shape = (num_samples, *exp.example_shape)
    path = os.path.join(workdir, "samples.npz")
    label_bytes = 0 if cycle is None else np.dtype(np.int32).itemsize
    check_disk_space(path, num_samples, math.prod(exp.example_shape) * dtype.itemsize + label_bytes)
    base_key = sampling.samples_key(exp.seed, step)
    is_writer = jax.process_index() == 0
    grid_path = os.path.join(workdir, f"samples_step_{step:07d}.png")
    shown, shown_count = [], min(num_samples, SCATTER_POINTS if points else GRID_IMAGES)
    if cycle is not None:  # enough for a row of each class
        shown_count = min(num_samples, grids.COLUMNS * len(cycle))
    # Every process draws every chunk (the sampler is one program over all devices); process 0 writes.
    writer = NpzStreamWriter(path, name, shape, dtype) if is_writer else contextlib.nullcontext()
    with writer:
        for generated in sampling.sample_chunks(exp, state, base_key, num_samples, cycle):
            if not is_writer:
                continue
            chunk = sampling.to_output(exp, generated)
            writer.write(chunk)
            if sum(map(len, shown)) < shown_count:
                shown.append(chunk[:shown_count - sum(map(len, shown))])
        if cycle is not None and is_writer:
            writer.next_array("labels", (num_samples,), np.int32)
            for start in range(0, num_samples, sampling.CHUNK):
                writer.write(sampling.labels_at(cycle, start, min(sampling.CHUNK, num_samples - start)))
        if exp.cfg.eval.truncation > 0 and is_writer:  # truncated latents: how, beside the samples
            method = np.array([exp.cfg.eval.truncation_method])
            for name, value in (("truncation", np.float32([exp.cfg.eval.truncation])), ("truncation_method", method)):
                writer.next_array(name, (1,), value.dtype)
                writer.write(value)
        signals.finishing(os.path.basename(path))  # the writer commits next: a signal no longer stops it
    if not is_writer:
        return ""
    shown = np.concatenate(shown)
    if points:
        # The mixture itself (what real_examples draws without a training set), outside any step.
        real = np.asarray(sample_mixture(exp.dataset.mixture, jax.random.PRNGKey(0), exp.cfg.data.batch_size))
        grids.save_scatter(grid_path, shown, real)
    elif cycle is not None:
        grids.save_grid(grid_path, grids.by_class(shown, sampling.labels_at(cycle, 0, len(shown))))
    else:
        grids.save_grid(grid_path, shown)
    print(f"wrote {num_samples} samples of step {step} to {path} and {grid_path}")
    return path
