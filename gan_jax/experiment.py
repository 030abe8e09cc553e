"""What train, sample and eval modes share: the data, the networks, the pure step, the device
layout of the state, and the checkpoints of a workdir. Everything that can fail on bad input
fails here, before anything is written."""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gan_jax import checkpoint, data, disk, keys, latents, models, objectives, parallel
from gan_jax.config import base_config, validate
from gan_jax.errors import ConfigError, UserError
from gan_jax.objectives.base import TrainState

# Fields that may change between the runs of one workdir (resuming longer, on other devices, ...).
RESUMABLE_FIELDS = ("train.steps", "train.log_every", "train.sample_every", "train.checkpoint_every",
                    "train.steps_per_call", "train.on_nonfinite", "train.max_rollbacks", "checkpoint.max_to_keep",
                    "data.prefetch", "data.dir", "data.tfds_dir", "parallel.mode", "parallel.shard_params",
                    "model.conv_impl")
# How a run is evaluated, logged or batched with other runs never changes what it trains.
RESUMABLE_SECTIONS = ("eval.", "log.", "sweep.")
# Values renamed since older workdirs were written (top-level field -> {old: new}), read under their new
# names: the GAN objective was also registered under a model's name, 'dcgan' (the same class).
RENAMED_VALUES = {"objective": {"dcgan": "gan"}}


SAMPLE_BATCH = 500  # latents per sampler call; samples of a run depend on it in the last bit


class Experiment:
    def __init__(self, cfg: ml_collections.ConfigDict, load_train_data: bool = True):
        validate(cfg)
        self.cfg = cfg
        self.dataset = data.get_dataset(cfg.data.name, cfg.data.source)
        if self.dataset.mixture is not None:
            self.images, labels = None, None
            self.example_shape: tuple[int, ...] = (2,)
        else:
            images, labels = data.load_arrays(cfg.data.name, cfg.data.split, cfg.data.source, cfg.data.dir,
                                              tfds_dir=cfg.data.get("tfds_dir"))
            if cfg.data.num_examples:  # limited-data studies: the split's first N images
                if cfg.data.num_examples > len(images):
                    raise ConfigError(f"data.num_examples={cfg.data.num_examples} is more than the {len(images)} "
                                      f"images of data.name={cfg.data.name!r} split {cfg.data.split!r}; accepted: "
                                      f"0 .. {len(images)}")
                images = images[:cfg.data.num_examples]
                labels = None if labels is None else labels[:cfg.data.num_examples]
            self.images = images if load_train_data else None
            self.example_shape = tuple(images.shape[1:])
        self.objective = objectives.get(cfg.objective)
        if self.objective.needs_images and self.dataset.mixture is not None:
            raise ConfigError(f"objective={cfg.objective!r} needs image data, got data.name={cfg.data.name!r}")
        # (N,) int32 for objectives that train on labels and class-conditional models (model.num_classes > 0)
        self.labels = None
        num_classes = cfg.model.num_classes
        if self.objective.needs_labels or num_classes:
            asking = (f"objective={cfg.objective!r}" if self.objective.needs_labels
                      else f"model.num_classes={num_classes}")
            if labels is None:
                raise ConfigError(f"{asking} needs labelled data; data.name={cfg.data.name!r} split {cfg.data.split!r} "
                                  "has no labels")
            if num_classes and labels.max() >= num_classes:
                raise ConfigError(f"model.num_classes={num_classes} is not accepted for data.name={cfg.data.name!r}, "
                                  f"whose labels go up to {labels.max()}; accepted: >= {labels.max() + 1}")
            self.labels = labels.astype(np.int32) if load_train_data else None
        self.pmap = cfg.parallel.mode == "pmap"
        model_cfg = ml_collections.ConfigDict(cfg.model.to_dict())
        model_cfg.axis_name = parallel.PMAP_AXIS if self.pmap else None
        self.nets = models.build(model_cfg, self.example_shape)
        if set(self.nets) != set(self.objective.nets):
            raise ConfigError(f"model.name={cfg.model.name!r} does not build networks for objective={cfg.objective!r}")
        parallel.check_batch(cfg.data.batch_size)
        self.builder = self.objective.steps(cfg, self.nets, self.example_shape, self.dataset.mixture,
                                            self.dataset.binarize, parallel.PMAP_AXIS if self.pmap else None)
        self.unit_range = self.builder.unit_range  # samples in [0, 1], not [-1, 1]
        self.mesh = parallel.make_mesh()
        self.seed = cfg.seed
        self._sample_jit = None

    # --- state -------------------------------------------------------------------------------
    def state_shardings(self):
        abstract = jax.eval_shape(self.builder.init_state, self.seed)
        return parallel.state_shardings(self.mesh, abstract, self.cfg.parallel.shard_params and not self.pmap)

    def init_state(self) -> TrainState:
        """The step-0 state, placed on the mesh (replicated or FSDP-sharded)."""
        return jax.jit(self.builder.init_state, static_argnums=0, out_shardings=self.state_shardings())(self.seed)

    def abstract_state(self):
        abstract = jax.eval_shape(self.builder.init_state, self.seed)
        return checkpoint.abstract_like(abstract, self.state_shardings())

    def checkpointer(self, workdir: str, asynchronous: bool = True, create: bool = True) -> checkpoint.Checkpointer:
        """The workdir's checkpoints; `create=False` for readers, which must not create the folder."""
        return checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), self.cfg.checkpoint.max_to_keep,
                                       asynchronous, create)

    # --- sampling ----------------------------------------------------------------------------
    def share_sampler(self, other: "Experiment") -> None:
        """Samples with `other`'s compiled sampler (runs of one sweep have the same networks)."""
        self._sample_jit = other._compile_sampler()

    def _compile_sampler(self):
        if self._sample_jit is None:  # one compilation per run, not one per sample grid
            self._sample_jit = parallel.one_execution_at_a_time(
                jax.jit(self.builder.sample_fn(), out_shardings=parallel.replicated(self.mesh)))
        return self._sample_jit

    def fixed_latents(self, num: int) -> jnp.ndarray:
        """The same latent batch for every sample grid of a run: (num, latent_dim)."""
        key = jax.random.fold_in(jax.random.PRNGKey(self.seed), keys.FIXED_LATENTS)
        return jax.random.normal(key, (num, self.cfg.model.latent_dim))

    def sample(self, state: TrainState, num: int, key: jax.Array | None = None, labels: np.ndarray | None = None,
               z: np.ndarray | None = None, truncation: tuple[float, str] | None = None) -> np.ndarray:
        """`num` samples (num, *example_shape) in model range as numpy, from the fixed latents, from
        `key` (truncated as `truncation` (threshold, method) says, by default eval.truncation and
        eval.truncation_method: latents.draw), or from latents `z` (num, latent_dim); the same on every
        process. A class-conditional run (model.num_classes > 0) takes their `labels` (num,) int, an
        unconditional one none. `state` is laid out as `init_state` places it."""
        self._check_generates()
        if (labels is None) != (not self.cfg.model.num_classes):
            raise ValueError(f"Experiment.sample: labels={'None' if labels is None else 'given'} for a run with "
                             f"model.num_classes={self.cfg.model.num_classes}; a conditional run takes labels (num,)")
        if z is None:
            threshold, method = truncation or (self.cfg.eval.truncation, self.cfg.eval.truncation_method)
            z = self.fixed_latents(num) if key is None else latents.draw(
                key, (num, self.cfg.model.latent_dim), threshold, method)
        return self.generate(state, z, labels)

    def generate(self, state: TrainState, z, labels: np.ndarray | None = None) -> np.ndarray:
        """Samples (num, *example_shape) in model range as numpy from latents z (num, latent_dim) (and, for a
        class-conditional run, labels (num,) int), in batches of SAMPLE_BATCH; the same on every process."""
        # Replicated output: readable on every process even when the mesh spans several, and when
        # the parameters are FSDP-sharded.
        self._check_generates()
        fn = self._compile_sampler()
        z = np.asarray(z)
        inputs = (z,) if labels is None else (z, np.asarray(labels, np.int32))  # the sampler's (z[, labels])
        return np.concatenate([np.asarray(fn(state, *(parallel.host_replicated(a[i:i + SAMPLE_BATCH], self.mesh)
                                                      for a in inputs)))
                               for i in range(0, len(z), SAMPLE_BATCH)])

    def _check_generates(self) -> None:
        if not self.objective.generates:
            raise UserError(f"objective={self.cfg.objective!r} generates nothing to sample; accepted: "
                            + ", ".join(name for name, o in objectives.OBJECTIVES.items() if o.generates))


def make_workdir(workdir: str) -> None:
    """Creates `workdir` (and its parents); refuses an unwritable one with UserError."""
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, f".write_test.{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise UserError(f"--workdir={workdir!r} is not writable: {e.strerror or e}") from e


def check_workdir_config(workdir: str, cfg: ml_collections.ConfigDict) -> bool:
    """Whether `workdir` already holds a run; refuses (writing nothing) one that holds a different
    config or whose config.json is damaged."""
    if not os.path.exists(os.path.join(workdir, "config.json")):
        return False
    difference = differing_field(workdir, cfg)
    if difference:
        raise UserError(f"--workdir={workdir!r} holds a run with a different config ({difference}); "
                        "use a new workdir")
    return True


def differing_field(workdir: str, cfg: ml_collections.ConfigDict) -> str | None:
    """"FIELD: OLD there, NEW now" for the first field (sorted) in which `cfg` differs from the run in
    `workdir` in what it trains (RESUMABLE_FIELDS and sections may differ), or None."""
    old, new = (flatten(json.loads(c.to_json())) for c in (load_workdir_config(workdir), cfg))
    for flat in (old, new):  # 'auto' is the source it resolves to ('files' with a data.dir, ...)
        flat["data.source"] = data.resolve_source(flat["data.name"], flat["data.source"], flat["data.dir"],
                                                  flat.get("data.tfds_dir"))[0]
    differing = [k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and k not in RESUMABLE_FIELDS
                 and not k.startswith(RESUMABLE_SECTIONS)]
    if not differing:
        return None
    k = sorted(differing)[0]
    return f"{k}: {old.get(k)!r} there, {new.get(k)!r} now"


def write_workdir_config(workdir: str, cfg: ml_collections.ConfigDict) -> None:
    """Writes config.json atomically (a reader never sees half of it)."""
    path = os.path.join(workdir, "config.json")
    disk.write_text(path, json.dumps(json.loads(cfg.to_json()), indent=2))


def load_workdir_config(workdir: str, call: str | None = None) -> ml_collections.ConfigDict:
    """The config of the run in `workdir`; `call` names, in the errors, the API call that asked for it
    (e.g. "load_run('runs/q')"), instead of launch.py's --workdir."""
    if not os.path.exists(os.path.join(workdir, "config.json")):
        named = f"{call}: {workdir!r}" if call else f"--workdir={workdir!r}"
        raise UserError(f"{named} holds no run (no config.json); train there first")
    return ml_collections.ConfigDict(_with_defaults(_read_config_json(workdir)))


def _with_defaults(saved: dict) -> dict:
    """A saved config with the fields added to base_config() since it was written, at their defaults,
    and renamed values (RENAMED_VALUES) under their new names, so that older workdirs resume, sample
    and evaluate (a new field's default keeps the old behaviour)."""
    def merge(defaults: dict, values: dict) -> dict:
        out = dict(defaults)
        for k, v in values.items():
            out[k] = merge(defaults[k], v) if isinstance(v, dict) and isinstance(defaults.get(k), dict) else v
        return out

    config = merge(json.loads(base_config().to_json()), saved)
    for field, renamed in RENAMED_VALUES.items():
        config[field] = renamed.get(config[field], config[field])
    return config


def _read_config_json(workdir: str) -> dict:
    path = os.path.join(workdir, "config.json")
    try:
        with open(path) as f:
            config = json.load(f)
        if not isinstance(config, dict):
            raise ValueError(f"a JSON {type(config).__name__}, not an object")
        return config
    except (OSError, ValueError) as e:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        reason = e.strerror if isinstance(e, OSError) else str(e).splitlines()[0]
        raise UserError(f"{path} is damaged ({reason}); every checkpoint holds a copy: "
                        f"cp {workdir}/checkpoints/STEP/config/metadata {path}, or use a new workdir") from None


def flatten(d: dict, prefix: str = "", sep: str = ".") -> dict:
    """Nested dicts -> one level, keys joined with `sep`: {'a': {'b': 1}} -> {'a.b': 1}."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}{sep}", sep))
        else:
            out[prefix + k] = v
    return out
