"""Checkpoints with orbax: the whole train state plus a checksum of it, so that a damaged
checkpoint is detected on restore and the previous good one is used instead of garbage.

Orbax writes each step into a temporary folder and renames it when complete, so a save cut short
(kill -9) is never listed as a step. Restore targets the shardings of the current mesh, so a run
can resume on a different number of devices."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from gan_jax.errors import UserError


class CheckpointError(UserError):
    """No checkpoint could be written or read."""


@jax.jit
def state_checksum(tree) -> jax.Array:
    """A uint32 checksum of every bit of every array: position-weighted sums of the 32-bit words."""
    total = jnp.uint32(0)
    for i, x in enumerate(jax.tree.leaves(tree)):
        x = jnp.asarray(x)
        if x.dtype.itemsize != 4:
            x = x.astype(jnp.float32)
        words = jax.lax.bitcast_convert_type(x, jnp.uint32).reshape(-1)
        weights = jnp.arange(1, words.size + 1, dtype=jnp.uint32) * jnp.uint32(2654435761)
        total = total + jnp.sum(words * weights, dtype=jnp.uint32) * jnp.uint32(2 * i + 1) + words.size
    return total


class Checkpointer:
    def __init__(self, directory: str, max_to_keep: int = 3, asynchronous: bool = True):
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                               enable_async_checkpointing=asynchronous)
        try:
            self.manager = ocp.CheckpointManager(self.directory, options=options,
                                                 item_names=("state", "checksum"))
        except OSError as e:
            raise CheckpointError(f"checkpoint folder {self.directory}: {e.strerror or e}") from e

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def save(self, step: int, state, force: bool = False) -> bool:
        """Starts saving `state` as `step` (asynchronously: arrays are copied, then written in the background)."""
        checksum = int(state_checksum(state))
        try:
            return self.manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), checksum=ocp.args.JsonSave({"checksum": checksum})),
                force=force)
        except OSError as e:
            raise CheckpointError(f"saving checkpoint {step} in {self.directory} failed: {e.strerror or e}; "
                                  f"earlier checkpoints are untouched") from e

    def wait(self) -> None:
        try:
            self.manager.wait_until_finished()
        except OSError as e:
            raise CheckpointError(f"saving a checkpoint in {self.directory} failed: {e.strerror or e}; "
                                  f"earlier checkpoints are untouched") from e

    def restore(self, step: int, abstract_state):
        """The state saved at `step`, placed as `abstract_state` (ShapeDtypeStructs with shardings) says.
        Raises CheckpointError if it cannot be read or its checksum does not match."""
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), checksum=ocp.args.JsonRestore()))
        except Exception as e:  # orbax, tensorstore and json raise many types for damaged files
            raise CheckpointError(f"checkpoint {step} in {self.directory} cannot be read: "
                                  f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
        expected = restored["checksum"]["checksum"]
        got = int(state_checksum(restored["state"]))
        if got != expected:
            raise CheckpointError(f"checkpoint {step} in {self.directory} is damaged: "
                                  f"checksum {got} != saved {expected}")
        return restored["state"]

    def restore_latest_good(self, abstract_state, report=print, step: int | None = None):
        """(step, state) of the newest checkpoint (at most `step`) that reads back intact, or (None, None)."""
        for s in reversed(self.all_steps()):
            if step is not None and s > step:
                continue
            try:
                return s, self.restore(s, abstract_state)
            except CheckpointError as e:
                report(f"skipping damaged checkpoint: {e}")
        return None, None

    def close(self) -> None:
        self.wait()
        self.manager.close()


def abstract_like(state, shardings):
    """ShapeDtypeStructs of `state` placed on `shardings`: the restore target."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=s), state, shardings)
