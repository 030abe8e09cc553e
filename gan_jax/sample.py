"""`launch.py --mode=sample`: samples from a saved checkpoint, without training."""

import os

import jax
import ml_collections
import numpy as np

from gan_jax.errors import UserError
from gan_jax.evaluate import samples as sample_io
from gan_jax.experiment import Experiment, load_workdir_config


def restore(workdir: str, step: int | None, cfg: ml_collections.ConfigDict | None = None):
    """(experiment, step, state) of the checkpoint `step` (default: the newest intact one) of `workdir`."""
    cfg = cfg if cfg is not None else load_workdir_config(workdir)
    exp = Experiment(cfg, load_train_data=False)
    ckpt = exp.checkpointer(workdir, asynchronous=False)
    steps = ckpt.all_steps()
    if not steps:
        raise UserError(f"--workdir={workdir!r} has no checkpoint; train there first")
    if step is not None and step not in steps:
        raise UserError(f"--step={step} has no checkpoint in {workdir}; accepted: {', '.join(map(str, steps))}")
    if step is not None:
        state = ckpt.restore(step, exp.abstract_state())
    else:
        step, state = ckpt.restore_latest_good(exp.abstract_state())
        if state is None:
            raise UserError(f"no intact checkpoint in {workdir}")
    ckpt.close()
    return exp, step, state


def sample(workdir: str, num_samples: int, step: int | None = None,
           cfg: ml_collections.ConfigDict | None = None) -> str:
    """Writes DIR/samples.npz (key 'images', uint8 NHWC; or 'points', float32 (N, 2)) and a grid
    samples_step_XXXXXXX.png. Samples come from a key folded from the seed and the step."""
    if num_samples <= 0:
        raise UserError(f"--num_samples={num_samples} must be positive")
    exp, step, state = restore(workdir, step, cfg)
    key = jax.random.fold_in(jax.random.PRNGKey(exp.seed), 2**31 - 3)
    generated = exp.sample(state, num_samples, key=jax.random.fold_in(key, step))
    if jax.process_index() != 0:
        return ""
    path = os.path.join(workdir, "samples.npz")
    grid_path = os.path.join(workdir, f"samples_step_{step:07d}.png")
    if exp.dataset.mixture is not None:
        np.savez(path + ".tmp.npz", points=generated.astype(np.float32))
        real = np.asarray(exp.builder.real_examples(jax.random.PRNGKey(0), None))
        sample_io.save_scatter(grid_path, generated, real)
    else:
        images = sample_io.to_uint8(generated, exp.cfg.objective)
        np.savez(path + ".tmp.npz", images=images)
        sample_io.save_grid(grid_path, images[:64])
    os.replace(path + ".tmp.npz", path)
    print(f"wrote {num_samples} samples of step {step} to {path} and {grid_path}")
    return path
