"""`launch.py --mode=eval`: runs the run's evaluators (gan_jax/evaluate/evaluators.py; eval.metrics, or
every one that fits) on a saved checkpoint and writes DIR/eval_step_XXXXXXX.json."""

import json
import os

import jax
import ml_collections
import numpy as np

from gan_jax import disk, latents, signals
from gan_jax.evaluate import evaluators
from gan_jax.sampling import restore


def evaluate(workdir: str, step: int | None = None, cfg: ml_collections.ConfigDict | None = None) -> dict:
    """{'step', evaluator name: its metrics, 'num_parameters'} of checkpoint `step` (default: the newest)."""
    exp, step, state = restore(workdir, step, cfg)
    names = evaluators.selected(exp)
    if jax.process_index() == 0:
        print(f"evaluating step {step} of {workdir}: {', '.join(names)}", flush=True)
    folder = workdir if jax.process_index() == 0 else None  # where evaluators that draw put their pictures
    result = {"step": int(step), **evaluators.run_all(exp, state, step, names, folder)}
    result["num_parameters"] = {k: int(sum(np.size(x) for x in jax.tree.leaves(v)))
                                for k, v in state.params.items()}
    result.update(latents.record(exp.cfg))  # truncated latents: how
    if jax.process_index() == 0:
        path = os.path.join(workdir, f"eval_step_{step:07d}.json")
        signals.finishing(os.path.basename(path))  # the work is done: a signal no longer stops the write
        disk.write_text(path, json.dumps(result, indent=2))
        print(json.dumps(result))
    return result
