"""Checkpoints with orbax: the whole train state (every network's parameters, BatchNorm statistics,
optimizer states, the step and the base key), a checksum of it, and the config, so that a damaged
checkpoint is detected on restore and the previous good one is used instead of garbage.

Orbax writes each step into `STEP.orbax-checkpoint-tmp-*` and renames it when complete, so a save cut
short (kill -9) is never listed as a step; training removes such leftovers (`cleanup_partial`).
A step that is listed but does not read back intact is moved to `damaged_checkpoints/` next to the
checkpoint folder (`quarantine`): orbax would otherwise refuse to save that step again, because it
never writes a step at or below the newest one it lists. Nothing is loaded from pickles: arrays
are restored from tensorstore into the given ShapeDtypeStructs, so restore targets the shardings
of the current mesh and a run can resume on a different number of devices."""

import glob
import os
import re
import shutil
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from gan_jax.errors import UserError

TMP_SUFFIX = ".orbax-checkpoint-tmp"


class CheckpointError(UserError):
    """No checkpoint could be written or read."""


@jax.jit
def state_checksum(tree) -> jax.Array:
    """A uint32 checksum of every bit of every array: position-weighted sums of the 32-bit words.
    Integer sums wrap mod 2**32 in any order, so the value does not depend on the sharding."""
    total = jnp.uint32(0)
    for i, x in enumerate(jax.tree.leaves(tree)):
        x = jnp.asarray(x)
        if x.dtype.itemsize != 4:
            x = x.astype(jnp.float32)
        words = jax.lax.bitcast_convert_type(x, jnp.uint32).reshape(-1)
        weights = jnp.arange(1, words.size + 1, dtype=jnp.uint32) * jnp.uint32(2654435761)
        total = total + jnp.sum(words * weights, dtype=jnp.uint32) * jnp.uint32(2 * i + 1) + words.size
    return total


def _reason(e: BaseException) -> str:
    """One line for an exception from orbax, tensorstore or the OS."""
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror} ({e.filename})" if e.filename else e.strerror
    text = str(e).strip().splitlines()
    # tensorstore's messages run to hundreds of characters; the OS error it wraps is what matters.
    code = re.search(r"os_error_code='(\d+)'", str(e))
    if code:
        return f"{os.strerror(int(code.group(1)))} (errno {code.group(1)})"
    return f"{type(e).__name__}: {text[0] if text else ''}"


class Checkpointer:
    """The checkpoints of one run folder. `save` is asynchronous unless `asynchronous=False`: it
    returns once the arrays are copied off the devices and a background thread writes them."""

    def __init__(self, directory: str, max_to_keep: int = 3, asynchronous: bool = True):
        self.directory = os.path.abspath(directory)
        self._pending: int | None = None  # the step a background save is writing
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise CheckpointError(f"checkpoint folder {self.directory} is a file, not a folder; move it away")
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                               enable_async_checkpointing=asynchronous)
        try:
            self.manager = ocp.CheckpointManager(self.directory, options=options,
                                                 item_names=("state", "checksum", "config"))
        except (OSError, ValueError) as e:
            raise CheckpointError(f"checkpoint folder {self.directory}: {_reason(e)}") from e

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def save(self, step: int, state, config: dict | None = None, force: bool = False) -> bool:
        """Starts saving `state` (and the JSON-able `config`) as `step`; returns whether a save started.
        Waits for the previous save first. Raises CheckpointError if it or this one cannot be written."""
        self.wait()  # a failed background save is reported under its own step, not this one
        checksum = int(state_checksum(state))
        items = {"state": ocp.args.StandardSave(state), "checksum": ocp.args.JsonSave({"checksum": checksum})}
        if config is not None:
            items["config"] = ocp.args.JsonSave(config)
        try:
            started = self.manager.save(step, args=ocp.args.Composite(**items), force=force)
        except Exception as e:  # ENOSPC, EACCES, a file in the way: orbax re-raises what tensorstore or os said
            raise CheckpointError(f"saving checkpoint {step} in {self.directory} failed: {_reason(e)}; "
                                  f"earlier checkpoints are untouched") from e
        if started:
            self._pending = step
        return started

    def wait(self) -> None:
        """Blocks until the background save (if any) is on disk. Raises CheckpointError if it failed."""
        step, self._pending = self._pending, None
        try:
            self.manager.wait_until_finished()
        except Exception as e:
            raise CheckpointError(f"saving checkpoint {step} in {self.directory} failed: {_reason(e)}; "
                                  f"earlier checkpoints are untouched") from e

    def restore(self, step: int, abstract_state):
        """The state saved at `step`, placed as `abstract_state` (ShapeDtypeStructs with shardings) says.
        Raises CheckpointError if it cannot be read or its checksum does not match."""
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), checksum=ocp.args.JsonRestore()))
            expected = int(restored["checksum"]["checksum"])
        except Exception as e:  # orbax, tensorstore and json raise many types for damaged files
            raise CheckpointError(f"checkpoint {step} in {self.directory} cannot be read: {_reason(e)}") from e
        got = int(state_checksum(restored["state"]))
        if got != expected:
            raise CheckpointError(f"checkpoint {step} in {self.directory} is damaged: "
                                  f"checksum {got} != saved {expected}")
        return restored["state"]

    def restore_latest_good(self, abstract_state, report: Callable[[str], None] = print, step: int | None = None,
                            quarantine: bool = False):
        """(step, state) of the newest checkpoint (at most `step`) that reads back intact, or (None, None).
        Each damaged one is reported in one line and, with `quarantine` (training), moved aside."""
        for s in reversed(self.all_steps()):
            if step is not None and s > step:
                continue
            try:
                return s, self.restore(s, abstract_state)
            except CheckpointError as e:
                moved = self.quarantine(s) if quarantine else None
                report(f"skipping damaged checkpoint: {e}" + (f"; moved to {moved}" if moved else ""))
        return None, None

    def quarantine(self, step: int) -> str | None:
        """Moves the folder of `step` to damaged_checkpoints/ beside the checkpoint folder (kept for
        inspection, never deleted) so that the step can be written again; returns its new path."""
        target = None
        if jax.process_index() == 0:
            source = os.path.join(self.directory, str(step))
            target = os.path.join(os.path.dirname(self.directory), "damaged_checkpoints",
                                  f"{step}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
            try:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.move(source, target)
            except OSError as e:
                raise CheckpointError(f"cannot move damaged checkpoint {source} aside: {_reason(e)}; "
                                      f"delete it by hand") from e
        ocp.multihost.sync_global_processes("gan_jax_quarantine")
        self.manager.reload()
        return target

    def cleanup_partial(self) -> list[str]:
        """Deletes the folders of saves that never completed (`STEP.orbax-checkpoint-tmp-*`, left by
        kill -9 or a full disk) and returns their names. Only training calls this: a sampling process
        must not delete the save that a training process is writing."""
        removed = []
        if jax.process_index() == 0:
            for path in sorted(glob.glob(os.path.join(glob.escape(self.directory), f"*{TMP_SUFFIX}*"))):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(os.path.basename(path))
        ocp.multihost.sync_global_processes("gan_jax_cleanup_partial")
        self.manager.reload()
        return removed

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.manager.close()


def abstract_like(state, shardings):
    """ShapeDtypeStructs of `state` placed on `shardings`: the restore target."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=s), state, shardings)
