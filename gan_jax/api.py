"""The Python API for notebooks: the same training, sampling and evaluation as launch.py.

    import gan_jax
    cfg = gan_jax.load_config("experiments/quickstart.py")     # PATH[:VARIANT], or a ConfigDict of your own
    gan_jax.train(cfg, "runs/quickstart")                       # resumes if the workdir holds this run
    run = gan_jax.load_run("runs/quickstart")                   # the newest intact checkpoint (or step=N)
    images = run.sample(16, seed=0)                             # uint8 (16, 28, 28, 1); 2D data: float32 points
    run.evaluate(metrics="classifier_space", num_samples=2000)  # {'classifier_space': {'fid': ...}, ...}
    run.metrics                                                 # the training log: DataFrame (pandas) or dicts
"""

import os

import ml_collections
import numpy as np

from gan_jax.errors import UserError


def load_config(spec: str) -> ml_collections.ConfigDict:
    """The config of an experiment file, 'PATH[:ARG]' as launch.py's --config takes it (a path to
    experiments/NAME.py, or its NAME alone for the repository's experiments), validated."""
    from gan_jax.config import validate
    from gan_jax.sweep import load_experiment_file

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
        from gan_jax.sample import restore

        self.workdir = os.fspath(workdir)
        self.experiment, self.step, self.state = restore(self.workdir, step)

    @property
    def config(self) -> ml_collections.ConfigDict:
        return self.experiment.cfg

    def sample(self, n: int, seed: int | None = None) -> np.ndarray:
        """n samples: uint8 images (n, H, W, C), or float32 points (n, 2) for 2D data. With seed = the
        run's config.seed (the default) they are the first n of `launch.py --mode=sample` at this step."""
        import jax

        from gan_jax import keys
        from gan_jax.evaluate import samples as sample_io
        from gan_jax.sample import sample_chunks

        if n <= 0:
            raise UserError(f"n={n} must be positive")
        seed = self.config.seed if seed is None else seed
        key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), keys.SAMPLES), self.step)
        chunks = list(sample_chunks(self.experiment, self.state, key, n))
        out = np.concatenate(chunks)
        if self.experiment.dataset.mixture is not None:
            return out.astype(np.float32)
        return sample_io.to_uint8(out, self.experiment.unit_range)

    def evaluate(self, **eval_fields) -> dict:
        """The run's evaluators on this checkpoint, as `launch.py --mode=eval` (which also writes
        eval_step_XXXXXXX.json); keyword arguments override config.eval fields, e.g. metrics='modes',
        num_samples=2500."""
        from gan_jax.evaluate import evaluators
        from gan_jax.experiment import Experiment

        cfg = ml_collections.ConfigDict(self.config.to_dict())
        for field, value in eval_fields.items():
            if field not in cfg.eval:
                raise UserError(f"evaluate({field}=...): no field eval.{field}; accepted: {', '.join(cfg.eval)}")
            cfg.eval[field] = value
        exp = Experiment(cfg, load_train_data=False) if eval_fields else self.experiment
        return {"step": self.step, **evaluators.run_all(exp, self.state, self.step, evaluators.selected(exp))}

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
