"""The input pipeline: the global batch of step N is a pure function of (data seed, N).

Example slot j of critic update i at step N has global position p = (N * n_critic + i) * B + j in
an endless stream made of epoch-wise permutations, epoch e = p // len(data) permuted by a generator
seeded with (seed, e). There is no iterator state: a resumed, re-sharded or vmapped run sees the
same examples. Each process gathers only its slice of the global batch; a background thread
prefetches the next calls' slices."""

import functools
import queue
import threading

import jax
import numpy as np


@functools.lru_cache(maxsize=4)
def epoch_permutation(seed: int, epoch: int, size: int) -> np.ndarray:
    """The order of the examples in an epoch: a pure function of (seed, epoch)."""
    return np.random.default_rng((seed, epoch)).permutation(size)


def global_indices(seed: int, size: int, first_position: int, count: int) -> np.ndarray:
    """Data indices of stream positions [first_position, first_position + count)."""
    positions = np.arange(first_position, first_position + count, dtype=np.int64)
    epochs = positions // size
    out = np.empty(count, np.int64)
    for epoch in np.unique(epochs):
        mask = epochs == epoch
        out[mask] = epoch_permutation(seed, int(epoch), size)[positions[mask] % size]
    return out


class InputPipeline:
    """Host-side batches for `steps_per_call` steps: uint8 (K, n_critic, local_batch, H, W, C),
    this process's slice [process_index * local_batch, (process_index + 1) * local_batch) of each global batch."""

    def __init__(self, images: np.ndarray, global_batch_size: int, seed: int, n_critic: int = 1,
                 steps_per_call: int = 1, process_index: int | None = None, process_count: int | None = None,
                 prefetch: int = 2):
        self.images = images
        self.global_batch_size = global_batch_size
        self.seed, self.n_critic, self.steps_per_call = seed, n_critic, steps_per_call
        self.process_index = jax.process_index() if process_index is None else process_index
        self.process_count = jax.process_count() if process_count is None else process_count
        if global_batch_size % self.process_count:
            raise ValueError(f"data.batch_size={global_batch_size} is not divisible by the "
                             f"{self.process_count} processes")
        self.local_batch_size = global_batch_size // self.process_count
        self.prefetch = prefetch
        self._queue: queue.Queue | None = None
        self._next_step: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def indices(self, step: int) -> np.ndarray:
        """Data indices (K, n_critic, local_batch) of the call that starts at `step`."""
        k, c, b = self.steps_per_call, self.n_critic, self.global_batch_size
        out = np.empty((k, c, self.local_batch_size), np.int64)
        offset = self.process_index * self.local_batch_size
        for s in range(k):
            for i in range(c):
                first = ((step + s) * c + i) * b + offset
                out[s, i] = global_indices(self.seed, len(self.images), first, self.local_batch_size)
        return out

    def batch(self, step: int) -> np.ndarray:
        """This process's images for the call starting at `step`, (K, n_critic, local_batch, H, W, C) uint8."""
        return self.images[self.indices(step)]

    def _worker(self, step: int, out: queue.Queue, stop: threading.Event) -> None:
        while not stop.is_set():
            item = (step, self.batch(step))
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            step += self.steps_per_call

    def get(self, step: int) -> np.ndarray:
        """Like `batch(step)`, served by the prefetch thread when calls come in order."""
        if self.prefetch <= 0:
            return self.batch(step)
        if self._next_step != step:
            self.close()
            self._stop = threading.Event()
            self._queue = queue.Queue(self.prefetch)
            self._thread = threading.Thread(target=self._worker, args=(step, self._queue, self._stop), daemon=True)
            self._thread.start()
        got_step, batch = self._queue.get()
        assert got_step == step, (got_step, step)
        self._next_step = step + self.steps_per_call
        return batch

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._thread, self._next_step = None, None
