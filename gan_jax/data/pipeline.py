"""The input pipeline: the global batch of step N is a pure function of (data seed, N).

Example slot j of critic update i at step N has global position p = (N * n_critic + i) * B + j in
an endless stream made of epoch-wise permutations, epoch e = p // len(data) permuted by a generator
seeded with (seed, e). There is no iterator state: a resumed, re-sharded or vmapped run sees the
same examples. Each process gathers only its slice of the global batch; a background thread
prefetches the next calls' slices."""

from __future__ import annotations

import functools
import queue
import threading

import jax
import numpy as np

from gan_jax.errors import ConfigError, DataError


@functools.lru_cache(maxsize=8)
def epoch_permutation(seed: int, epoch: int, size: int) -> np.ndarray:
    """The order (size,) int64 of the examples in an epoch: a pure function of (seed, epoch, size).
    Read-only, because the cached array is shared by every caller."""
    perm = np.random.default_rng((seed, epoch)).permutation(size)
    perm.setflags(write=False)
    return perm


def stream_indices(seed: int, size: int, positions: np.ndarray) -> np.ndarray:
    """Data indices (same shape as `positions`, int64) of the given stream positions."""
    positions = np.asarray(positions, np.int64)
    epochs, offsets = np.divmod(positions, size)
    first, last = int(epochs.min()), int(epochs.max())
    if first == last:  # the common case: one batch inside one epoch
        return epoch_permutation(seed, first, size)[offsets]
    out = np.empty(positions.shape, np.int64)
    for epoch in range(first, last + 1):
        mask = epochs == epoch
        out[mask] = epoch_permutation(seed, epoch, size)[offsets[mask]]
    return out


class InputPipeline:
    """Host-side batches for `steps_per_call` steps: uint8 (K, n_critic, local_batch, H, W, C),
    this process's slice [process_index * local_batch, (process_index + 1) * local_batch) of each
    global batch. `get(step)` is `batch(step)` served by a prefetch thread; use `close()` (or `with`).
    `images` may also be a tuple of arrays of one length (e.g. images and labels): batches are then
    tuples of the arrays' rows, in the same order."""

    def __init__(self, images: np.ndarray | tuple[np.ndarray, ...], global_batch_size: int, seed: int,
                 n_critic: int = 1, steps_per_call: int = 1, process_index: int | None = None,
                 process_count: int | None = None, prefetch: int = 2):
        arrays = images if isinstance(images, tuple) else (images,)
        for a in arrays:
            if not isinstance(a, np.ndarray) or a.ndim < 1 or len(a) == 0 or len(a) != len(arrays[0]):
                raise DataError(f"input pipeline: images {getattr(a, 'shape', type(a))}, expected a non-empty "
                                f"array (N, ...) (of the same N, {len(arrays[0])}, as the others)")
        checks = (("data.batch_size", global_batch_size, 1), ("data.seed", seed, 0),
                  ("train.n_critic", n_critic, 1), ("train.steps_per_call", steps_per_call, 1),
                  ("data.prefetch", prefetch, 0))
        for field, value, low in checks:
            if not isinstance(value, int | np.integer) or value < low:
                raise ConfigError(f"{field}={value!r} is not accepted; expected an integer >= {low}")
        self.images = images
        self.global_batch_size = int(global_batch_size)
        self.seed, self.n_critic, self.steps_per_call = int(seed), int(n_critic), int(steps_per_call)
        self.process_index = jax.process_index() if process_index is None else process_index
        self.process_count = jax.process_count() if process_count is None else process_count
        if not 0 <= self.process_index < self.process_count:
            raise ConfigError(f"process_index={self.process_index} is not in [0, {self.process_count})")
        if global_batch_size % self.process_count:
            raise ConfigError(f"data.batch_size={global_batch_size} is not divisible by the "
                              f"{self.process_count} processes; use a multiple of {self.process_count}")
        self.local_batch_size = self.global_batch_size // self.process_count
        self.prefetch = int(prefetch)
        self._queue: queue.Queue | None = None
        self._next_step: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def indices(self, step: int) -> np.ndarray:
        """Data indices (K, n_critic, local_batch) int64 of the call that starts at `step`."""
        k, c, b = self.steps_per_call, self.n_critic, self.global_batch_size
        updates = (step + np.arange(k, dtype=np.int64))[:, None] * c + np.arange(c, dtype=np.int64)
        slots = self.process_index * self.local_batch_size + np.arange(self.local_batch_size, dtype=np.int64)
        size = len(self.images[0] if isinstance(self.images, tuple) else self.images)
        return stream_indices(self.seed, size, updates[..., None] * b + slots)

    def batch(self, step: int) -> np.ndarray | tuple[np.ndarray, ...]:
        """This process's images (K, n_critic, local_batch, H, W, C) uint8 for the call starting at `step`
        (a tuple of each array's rows (K, n_critic, local_batch, ...) when given a tuple)."""
        if step < 0:
            raise ValueError(f"step={step} is negative")
        indices = self.indices(step)
        if isinstance(self.images, tuple):
            return tuple(a[indices] for a in self.images)
        return self.images[indices]

    def _worker(self, step: int, out: queue.Queue, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                item = (step, self.batch(step), None)
            except Exception as e:  # handed to the consumer: a dead thread must not hang get()
                item = (step, None, e)
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[2] is not None:
                return
            step += self.steps_per_call

    def get(self, step: int) -> np.ndarray:
        """Like `batch(step)`, served by the prefetch thread when calls come in order; any other
        step (a rollback, a resume, a jump) restarts the thread there."""
        if self.prefetch <= 0:
            return self.batch(step)
        if self._next_step != step:
            self.close()
            self._stop = threading.Event()
            self._queue = queue.Queue(self.prefetch)
            self._thread = threading.Thread(target=self._worker, args=(step, self._queue, self._stop),
                                            name="gan_jax-prefetch", daemon=True)
            self._thread.start()
        got_step, batch, error = self._queue.get()
        if error is not None:
            self.close()
            raise error
        assert got_step == step, (got_step, step)
        self._next_step = step + self.steps_per_call
        return batch

    def close(self) -> None:
        """Stops the prefetch thread (idempotent); `get` starts a new one when needed."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._thread, self._queue, self._next_step = None, None, None

    def __enter__(self) -> InputPipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
