"""Samples of a saved run, for `launch.py --mode=sample` (sample.py), the evaluators and the notebook
API: the run's checkpoint restored, and its samples drawn a chunk at a time from keys folded from the
seed, the step and the chunk index."""

import math
from collections.abc import Iterator

import jax
import ml_collections
import numpy as np

from gan_jax import keys, memory, signals
from gan_jax.errors import UserError
from gan_jax.experiment import SAMPLE_BATCH, Experiment, differing_field, load_workdir_config
from gan_jax.grids import to_uint8

# Samples per call of the sampler, and so per key: part of what the samples are (chunk i comes from
# fold_in(key, i)), so changing it changes every run's samples beyond the first chunk. Memory holds a
# few chunks in model range (float32) at a time: 31 MB each for 28x28x1 images, 490 MB for 64x64x3.
CHUNK = 10_000
# Beyond the samples held in memory (api.Run.sample): chunks in model range (float32) in flight, the
# sampler's buffers among them, and slack for the rest of the process.
MEMORY_MARGIN_CHUNKS = 4
MEMORY_MARGIN_BYTES = 256 * 2**20


def restore(workdir: str, step: int | None, cfg: ml_collections.ConfigDict | None = None, call: str | None = None):
    """(experiment, step, state) of the checkpoint `step` (default: the newest intact one) of `workdir`,
    with the run's config.json or `cfg`, which may differ from it only in resumable fields (eval.*, ...).
    `call` names, in the errors, the API call that asked (e.g. "load_run('runs/q', step=7)"), instead of
    launch.py's --workdir and --step."""
    if cfg is None:
        cfg = load_workdir_config(workdir, call)
    elif difference := differing_field(workdir, cfg):  # its checkpoints would not fit cfg's networks
        raise UserError(f"--config differs from the run in {workdir} ({difference}); sampling and evaluation "
                        "use the run's own config: drop --config, and override only eval.* fields "
                        "(--config.eval.FIELD=VALUE)")
    exp = Experiment(cfg, load_train_data=False)
    ckpt = exp.checkpointer(workdir, asynchronous=False, create=False)
    steps = ckpt.all_steps()
    if not steps:
        named = f"{call}: {workdir!r}" if call else f"--workdir={workdir!r}"
        raise UserError(f"{named} has no checkpoint; train there first")
    if step is not None and step not in steps:
        named = f"{call}: step={step}" if call else f"--step={step}"
        raise UserError(f"{named} has no checkpoint in {workdir}; accepted: {', '.join(map(str, steps))}")
    if step is not None:
        state = ckpt.restore(step, exp.abstract_state())
    else:
        step, state = ckpt.restore_latest_good(exp.abstract_state())
        if state is None:
            raise UserError(f"{call + ': ' if call else ''}no intact checkpoint in {workdir}")
    ckpt.close()
    return exp, step, state


def samples_key(seed: int, step: int) -> jax.Array:
    """The base key of the samples of checkpoint `step` (chunk i: fold_in(it, i)), for a run's `seed`."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), keys.SAMPLES), step)


def output_format(exp: Experiment) -> tuple[str, np.dtype]:
    """How samples are handed out: ('points', float32) for 2D data, else ('images', uint8)."""
    return ("points", np.dtype(np.float32)) if exp.dataset.mixture is not None else ("images", np.dtype(np.uint8))


def to_output(exp: Experiment, generated) -> np.ndarray:
    """A chunk in model range (k, *example_shape) in the output format: float32 points, or uint8 images
    rounded as the saved PNGs are."""
    if exp.dataset.mixture is not None:
        return np.asarray(generated, np.float32)
    return to_uint8(generated, exp.unit_range)


def sample_chunks(exp: Experiment, state, base_key: jax.Array, num_samples: int) -> Iterator[np.ndarray]:
    """`num_samples` samples in model range, as arrays (k <= CHUNK, *example_shape) in order; chunk i
    is drawn from fold_in(base_key, i), so sample j depends only on base_key and j (and CHUNK)."""
    for index, start in enumerate(range(0, num_samples, CHUNK)):
        n = min(CHUNK, num_samples - start)
        # A short last chunk is drawn as the start of a longer one, so that each of its samples comes
        # out of the same computation, to the bit, as in a run that draws more: the sampler's batches
        # must have the same sizes (XLA's kernels for other sizes round differently in the last bit),
        # and with non-partitionable threefry the latents must have the same count.
        if jax.config.jax_threefry_partitionable:
            drawn = min(CHUNK, -(-n // SAMPLE_BATCH) * SAMPLE_BATCH)
        else:
            drawn = CHUNK
        signals.check_interrupted()  # a signal dropped inside a callback stops the work here
        yield exp.sample(state, drawn, key=jax.random.fold_in(base_key, index))[:n]


def check_memory(call: str, num_samples: int, exp: Experiment) -> None:
    """Raises UserError, in one line naming `call` (the API call, e.g. "load_run('runs/q').sample"),
    unless `num_samples` samples in the output format (one array) fit in the host's available memory
    with a margin: MEMORY_MARGIN_CHUNKS chunks of float32 samples in flight and MEMORY_MARGIN_BYTES.
    An unknown amount of memory is not checked."""
    available = memory.host_available_bytes()
    if available is None:
        return
    per_sample = math.prod(exp.example_shape) * output_format(exp)[1].itemsize
    margin = MEMORY_MARGIN_CHUNKS * CHUNK * math.prod(exp.example_shape) * 4 + MEMORY_MARGIN_BYTES
    need = num_samples * per_sample + margin
    if need > available:
        most = max(0, (available - margin) // per_sample)
        raise UserError(f"{call}(n={num_samples}) needs {need / 1e9:,.2f} GB of memory ({per_sample} bytes per "
                        f"sample and {margin / 1e9:.2f} GB for sampling) but {available / 1e9:,.2f} GB are available; "
                        f"accepted: n <= {most}; sample_chunks(n) streams any n, a chunk at a time")
