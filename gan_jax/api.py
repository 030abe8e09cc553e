"""The Python API for notebooks: the same training, sampling and evaluation as launch.py.

    import gan_jax
    cfg = gan_jax.load_config("experiments/quickstart.py")     # PATH[:VARIANT], or a ConfigDict of your own
    gan_jax.train(cfg, "runs/quickstart")                       # resumes if the workdir holds this run
    run = gan_jax.load_run("runs/quickstart")                   # the newest intact checkpoint (or step=N)
    images = run.sample(16, seed=0)                             # uint8 (16, 28, 28, 1); 2D data: float32 points
    threes = run.sample(16, labels=3)                           # class-conditional runs: a class, classes, 'all'
    for chunk in run.sample_chunks(10**9):                      # any count, <= 10,000 at a time: sample(n) in order
        ...
    run.evaluate(metrics="classifier_space", num_samples=2000)  # {'classifier_space': {'fid': ...}, ...}
    run.metrics                                                 # the training log: DataFrame (pandas) or dicts
"""

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import ml_collections
import numpy as np

from gan_jax.errors import UserError

if TYPE_CHECKING:  # the sampling module imports JAX: not at import time
    from gan_jax.sampling import Labels


def load_config(spec: str) -> ml_collections.ConfigDict:
    """The config of an experiment file, 'PATH[:ARG]' as launch.py's --config takes it (a path to
    experiments/NAME.py, or its NAME alone for the repository's experiments), validated."""
    from gan_jax.config import validate
    from gan_jax.experiment_files import load_experiment_file

    module, arg = load_experiment_file(spec)
    cfg = module.get_config(arg)
    validate(cfg)
    return cfg


def train(config: ml_collections.ConfigDict | str, workdir: str) -> dict:
    """Trains `config` (a ConfigDict or a load_config spec) in `workdir` as `launch.py` does (resuming a
    run there); returns the last logged metrics."""
    from gan_jax.training import train as train_run

    cfg = load_config(config) if isinstance(config, str) else config
    return train_run(cfg, os.fspath(workdir))


class Run:
    """A trained run, restored from a checkpoint of its workdir."""

    def __init__(self, workdir: str, step: int | None = None):
        from gan_jax.sampling import restore

        self.workdir = os.fspath(workdir)
        # How the user asked for the run, named in errors (instead of launch.py's --workdir and --step).
        self.call = f"load_run({self.workdir!r}" + (f", step={step})" if step is not None else ")")
        self.experiment, self.step, self.state = restore(self.workdir, step, call=self.call)

    @property
    def config(self) -> ml_collections.ConfigDict:
        return self.experiment.cfg

    def sample(self, n: int, seed: int | None = None, labels: "Labels" = None, truncation: float | None = None,
               truncation_method: str | None = None) -> np.ndarray:
        """n samples: uint8 images (n, H, W, C), or float32 points (n, 2) for 2D data. With seed = the
        run's config.seed (the default) they are the first n of `launch.py --mode=sample` at this step.
        A class-conditional run's are of the classes `labels` (gan_jax.sampling.class_cycle): a class
        (3), classes taken in turn ([0, 1, 2], '0,1,2'), 'all' (the default: every class in turn), or n
        labels, one per sample; whatever the classes, sample j has the latent of sample j of the seed.
        `truncation` > 0 draws the latents truncated at that |z_i| by `truncation_method` ('resample', the
        default, or 'clip'; gan_jax.latents); None: the run's eval.truncation (0, none, unless set).
        A count whose array does not fit in the host's available memory is refused before anything is
        drawn (sample_chunks streams any count)."""
        from gan_jax.sampling import check_memory, output_format, truncation_of

        self._check_count(n, "sample")
        self._check_labels(labels, "sample")
        cut = truncation_of(self.config, truncation, truncation_method, f"{self.call}.sample")
        check_memory(f"{self.call}.sample", n, self.experiment)
        out = np.empty((n, *self.experiment.example_shape), output_format(self.experiment)[1])
        start = 0
        for chunk in self._chunks(n, seed, labels, cut):  # filled in place: the array is the only copy held
            out[start:start + len(chunk)] = chunk
            start += len(chunk)
        return out

    def sample_chunks(self, n: int, seed: int | None = None, labels: "Labels" = None, truncation: float | None = None,
                      truncation_method: str | None = None) -> Iterator[np.ndarray]:
        """The samples of `sample(n, seed, labels, truncation, truncation_method)`, in order, as arrays of at
        most gan_jax.sampling.CHUNK (10,000) samples each: uint8 (k, H, W, C) or float32 (k, 2); their
        concatenation is sample(...) bit for bit. Only a chunk at a time is held, so n may be larger than
        memory (10**9)."""
        from gan_jax.sampling import truncation_of

        self._check_count(n, "sample_chunks")
        self._check_labels(labels, "sample_chunks")
        return self._chunks(n, seed, labels,
                            truncation_of(self.config, truncation, truncation_method, f"{self.call}.sample_chunks"))

    def _check_count(self, n: int, method: str) -> None:
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n <= 0:
            raise UserError(f"{self.call}.{method}(n={n!r}): n is not accepted; accepted: a positive count")

    def _check_labels(self, labels: "Labels", method: str) -> None:
        from gan_jax.sampling import class_cycle

        class_cycle(self.config.model.num_classes, labels, f"{self.call}.{method}(labels={{!r}})")

    def _chunks(self, n: int, seed: int | None, labels: "Labels",
                truncation: tuple[float, str]) -> Iterator[np.ndarray]:
        from gan_jax.sampling import sample_chunks, samples_key, to_output

        key = samples_key(self.config.seed if seed is None else seed, self.step)
        for generated in sample_chunks(self.experiment, self.state, key, int(n), labels, truncation):
            yield to_output(self.experiment, generated)

    def evaluate(self, **eval_fields) -> dict:
        """The run's evaluators on this checkpoint, as `launch.py --mode=eval` (which also writes
        eval_step_XXXXXXX.json); keyword arguments override config.eval fields, e.g. metrics='modes',
        num_samples=2500."""
        from gan_jax import latents
        from gan_jax.evaluate import evaluators
        from gan_jax.experiment import Experiment

        cfg = ml_collections.ConfigDict(self.config.to_dict())
        for field, value in eval_fields.items():
            if field not in cfg.eval:
                raise UserError(f"evaluate({field}=...): no field eval.{field}; accepted: {', '.join(cfg.eval)}")
            cfg.eval[field] = value
        exp = Experiment(cfg, load_train_data=False) if eval_fields else self.experiment
        return {"step": self.step, **evaluators.run_all(exp, self.state, self.step, evaluators.selected(exp)),
                **latents.record(cfg)}

    @property
    def metrics(self):
        """metrics.jsonl: a pandas DataFrame (one row per record, 'step' and every metric as columns)
        where pandas is installed, else a list of dicts."""
        from gan_jax.writers import read_metrics

        records = read_metrics(self.workdir)  # skips a line cut by a kill, saying so on stderr
        try:
            import pandas
        except ImportError:
            return records
        return pandas.DataFrame.from_records(records)


def load_run(workdir: str, step: int | None = None) -> Run:
    """The run in `workdir` at checkpoint `step` (default: the newest intact one)."""
    return Run(workdir, step)
