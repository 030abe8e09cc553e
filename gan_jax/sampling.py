"""Samples of a saved run, for `launch.py --mode=sample` (sample.py), the evaluators and the notebook
API: the run's checkpoint restored, and its samples drawn a chunk at a time from keys folded from the
seed, the step and the chunk index.

A class-conditional run (model.num_classes = K > 0) draws sample j of class cycle[j % len(cycle)], the
classes asked for (`class_cycle`: one class, a list, 'all' = every class, or n labels, one per
sample); its latents are those of an unconditional run of the same seed, whatever the classes, so
that samples of one latent in two classes differ only in the class."""

import math
from collections.abc import Iterator, Sequence

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


Labels = int | str | Sequence[int] | np.ndarray | None  # what a caller may ask for: see class_cycle


def class_cycle(num_classes: int, labels: Labels, named: str) -> np.ndarray | None:
    """The classes that samples cycle through, int32 (m,): sample j is of class cycle[j % m]. `labels`:
    a class (3 or '3'), classes (a sequence, an array, or '0,1,2'), or 'all' (every class: n samples
    hold equal numbers of each where K divides n); a sequence of n labels is each sample's. None: 'all'
    for a class-conditional run; an unconditional run (num_classes = 0) accepts None only, and gets None.
    Bad input is a UserError naming how the caller gave them, `named` with {!r} for the value
    ('--labels={!r}', "load_run('runs/c').sample(labels={!r})"), and what is accepted."""
    if not num_classes:
        if labels is None:
            return None
        raise UserError(f"{named.format(labels)}: the run is unconditional (model.num_classes=0); accepted: no labels")
    accepted = f"accepted: a class in [0, {num_classes}), several (0,1,2, or a list of them), or 'all'"
    if labels is None or (isinstance(labels, str) and labels.strip() == "all"):
        return np.arange(num_classes, dtype=np.int32)
    try:
        if isinstance(labels, str):
            words = [w.strip() for w in labels.split(",")]
            if not all(w.isascii() and w.isdigit() for w in words):
                raise ValueError(labels)
            cycle = np.array([int(w) for w in words])
        else:
            cycle = np.atleast_1d(np.asarray(labels))
            if isinstance(labels, bool) or cycle.dtype == bool or not np.issubdtype(cycle.dtype, np.integer):
                raise ValueError(labels)
    except (ValueError, TypeError):
        raise UserError(f"{named.format(labels)} is not accepted; {accepted}") from None
    if cycle.ndim != 1 or not len(cycle) or cycle.min() < 0 or cycle.max() >= num_classes:
        raise UserError(f"{named.format(labels)} is not accepted; {accepted}")
    return cycle.astype(np.int32)


def labels_at(cycle: np.ndarray, start: int, n: int) -> np.ndarray:
    """The classes int32 (n,) of samples start, ..., start + n - 1 of a class cycle (class_cycle)."""
    return cycle[np.arange(start, start + n, dtype=np.int64) % len(cycle)]


def sample_chunks(exp: Experiment, state, base_key: jax.Array, num_samples: int,
                  labels: Labels = None, truncation: tuple[float, str] | None = None) -> Iterator[np.ndarray]:
    """`num_samples` samples in model range, as arrays (k <= CHUNK, *example_shape) in order; chunk i
    is drawn from fold_in(base_key, i), so sample j depends only on base_key and j (and CHUNK), and for
    a class-conditional run on its class, labels_at(class_cycle(K, labels), j, 1) (default: every class
    in turn). `truncation`: (threshold, method) of the latents (Experiment.sample; default the config's)."""
    cycle = class_cycle(exp.cfg.model.num_classes, labels, "sample_chunks(labels={!r})")
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
        chunk_labels = None if cycle is None else labels_at(cycle, start, drawn)
        yield exp.sample(state, drawn, key=jax.random.fold_in(base_key, index), labels=chunk_labels,
                         truncation=truncation)[:n]


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


def truncation_of(cfg: ml_collections.ConfigDict, truncation: float | None = None, method: str | None = None,
                  named: str = "truncation") -> tuple[float, str]:
    """(threshold, method) of samples: the arguments where given, else cfg.eval's; a bad one is a UserError
    naming it as `named` says ('{call}.sample(truncation=...)'), with what is accepted."""
    from gan_jax.latents import TRUNCATIONS

    threshold = cfg.eval.truncation if truncation is None else truncation
    method = cfg.eval.truncation_method if method is None else method
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold) \
            or threshold < 0:
        raise UserError(f"{named}: truncation={threshold!r} is not accepted; accepted: a finite number >= 0 (0: none)")
    if method not in TRUNCATIONS:
        raise UserError(f"{named}: truncation_method={method!r} is not accepted; accepted: {', '.join(TRUNCATIONS)}")
    return float(threshold), method
