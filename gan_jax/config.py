"""The config schema: `base_config()` holds every field all runs share and its default, so that
experiments only choose values and any field can be overridden on the command line
(`--config.train.steps=100`); a model's own fields (`model.generator_width`, ...), their defaults and
accepted values are declared beside its builder (gan_jax/models: `register(name, fields)`), the model
fields every config carries in models.SHARED_FIELDS. `validate()` refuses bad values with one line that
names the field, the value and what is accepted; every list of accepted names comes from its registry."""

import ast
import math

import ml_collections

from gan_jax import keys
from gan_jax.errors import ConfigError

PARALLEL_MODES = ("jit", "pmap")
NONFINITE_POLICIES = ("stop", "rollback")


def base_config() -> ml_collections.ConfigDict:
    from gan_jax import models  # the model registry imports flax: not at config import time

    c = ml_collections.ConfigDict()
    c.objective = "gan"
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.name = "mnist"
    # auto (files where data.dir is given, else TFDS) | files | tfds | synthetic | embedded | memory (data.held)
    c.data.source = "auto"
    c.data.dir = ml_collections.FieldReference(None, field_type=str)
    c.data.tfds_dir = ml_collections.FieldReference(None, field_type=str)  # TFDS's data folder; None: its default
    c.data.split = "train"
    c.data.eval_split = "test"
    c.data.batch_size = 64  # the global batch, over all devices and hosts
    c.data.random_flip = False
    c.data.diff_augment = ""  # GANs: DiffAugment before every D forward, e.g. 'translation,cutout,color'
    # GANs, images: adaptive augmentation (ops/ada.py) of every D input, its probability p moved every ada_interval
    # steps toward E[sign(D(real))] = ada_target (Karras et al. 2020: 0.6, 4, 500); 0: off
    c.data.ada_target = 0.0
    c.data.ada_pipeline = "bc"  # ops/ada.py ADA_PIPELINES
    c.data.ada_interval = 4
    c.data.ada_kimg = 500.0  # thousands of images over which p can move from 0 to 1
    c.data.random_shift = 0  # classifier: translate each example by up to this many pixels
    c.data.seed = ml_collections.FieldReference(None, field_type=int)  # None: the run's seed
    c.data.prefetch = 2
    # 2D mixtures: a fixed training set of this many points (0: fresh points every step); images: the split's
    # first this many (0: all), for limited-data studies
    c.data.num_examples = 0

    c.model = ml_collections.ConfigDict()  # the model's own fields: gan_jax/models (register), its defaults
    c.model.name = models.DEFAULT_MODEL
    for name, field in models.field_specs().items():
        if field.every_config:
            c.model[name] = field.default
        elif field.default is not None:
            # None: the model's own default (models.settings); typed, so that `--config.model.NAME=...`
            # and sweeps can set it in a config whose experiment file leaves it out
            c.model[name] = ml_collections.FieldReference(None, field_type=type(field.default))

    c.loss = ml_collections.ConfigDict()
    c.loss.name = "non_saturating"  # GANs: see losses.GAN_LOSSES; VAEs: 'elbo'
    c.loss.likelihood = "bernoulli"  # VAE: bernoulli | gaussian
    c.loss.beta = 1.0  # VAE: weight of the KL term (1: VAE, else beta-VAE)
    c.loss.gaussian_std = 0.1
    c.loss.feature_reconstruction_weight = 1e-2  # VAE-GAN: gamma, the decoder's weight of D-feature reconstruction
    c.loss.iwae_k = 1  # VAE: importance samples of the training bound (Burda et al. 2015); 1: the ELBO
    c.loss.elbo_samples = 1  # VAE: latent samples the ELBO averages over (Burda et al.'s "VAE, k = ...")
    c.loss.penalties = ""  # GANs: D penalties name:weight[:every], e.g. "r1:10" or "wgan_gp:10" (penalties.py)
    c.loss.penalty_schedule = "constant"  # GANs: the penalties' weights over the run (penalties.PENALTY_SCHEDULES)
    c.loss.penalty_final_scale = 0.1  # ... reaching this times loss.penalties' weights at train.steps (R3GAN: 0.1)
    c.loss.clip = 0.0  # GANs: clip every D parameter into [-clip, clip] after its update (WGAN); 0: off
    # AC-GAN (a D with a class head, model.discriminator_conditioning='auxiliary'): weights of the class
    # cross-entropies in D's loss (on the real and the generated batch) and in G's (Odena et al.: 1 each)
    c.loss.class_weight_real = 1.0
    c.loss.class_weight_fake = 1.0
    c.loss.class_weight_generator = 1.0
    # GANs: zCR (Zhao et al. 2021), latent consistency: D's term weight * mean (D(G(z)) - D(G(z + sigma eps)))^2,
    # G's -weight * mean (G(z) - G(z + sigma eps))^2; 0 and 0: off (the paper: 5, 0.5, sigma 0.03)
    c.loss.zcr_discriminator = 0.0
    c.loss.zcr_generator = 0.0
    c.loss.zcr_sigma = 0.03

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.learning_rate = 2e-4
    c.optimizer.discriminator_learning_rate = ml_collections.FieldReference(None, field_type=float)
    c.optimizer.b1 = 0.5
    c.optimizer.b2 = 0.999
    c.optimizer.eps = 1e-8
    c.optimizer.schedule = "constant"  # objectives/base.py SCHEDULES (constant, linear, cosine, exponential, ...)
    c.optimizer.warmup_steps = 0
    c.optimizer.decay_factor = 1.0  # schedule 'exponential': the learning rate is divided by this every update
    c.optimizer.min_learning_rate = 0.0  # schedule 'exponential': its floor
    # optimizer.name (objectives/base.py OPTIMIZERS): adam (b1, b2, eps) | momentum (pylearn2's SGD with
    # momentum: optimizer.momentum until update momentum_start, then linearly to final_momentum at momentum_saturate)
    c.optimizer.name = "adam"
    c.optimizer.momentum = 0.5
    c.optimizer.final_momentum = 0.5
    c.optimizer.momentum_start = 0
    c.optimizer.momentum_saturate = 0

    c.train = ml_collections.ConfigDict()
    c.train.steps = 10_000  # generator (or VAE) updates
    c.train.n_critic = 1  # discriminator updates per generator update
    c.train.update_rule = "alternating"  # GANs (objectives/gan_updates.py UPDATE_RULES): D, then G against the new D
    # Conditional GANs (objectives/labels.py GENERATED_LABEL_RULES): the generated batch's labels, drawn uniformly
    # over the classes, or the real batch's (R3GAN: each real/generated pair shares its class)
    c.train.generated_labels = "uniform"
    c.train.steps_per_call = 1  # steps per dispatch, run with lax.scan
    c.train.log_every = 100
    c.train.sample_every = 1000
    c.train.checkpoint_every = 1000
    c.train.on_nonfinite = "stop"  # stop | rollback
    c.train.max_rollbacks = 3
    c.train.ema_decay = 0.0  # GANs: samples and evaluations from G's moving average with this decay; 0: off
    c.train.ema_start = 0  # G updates before the average starts (until then it is a copy of G)
    # The networks' forwards in this dtype, parameters, optimizer states and losses in float32
    # (mixed_precision.py COMPUTE_DTYPES): 'bfloat16' for accelerators' memory and matrix units.
    c.train.compute_dtype = "float32"
    # Gradients summed over this many micro-batches of each update's batch before the update (memory:
    # the activations of one micro-batch at a time; objectives/base.py Steps.accumulate)
    c.train.grad_accumulation = 1
    c.train.top_k = False  # GANs: G's loss on the generated samples D scores highest only (losses.py)
    c.train.top_k_decay = 0.99  # ... a fraction max(decay^(step // top_k_every), top_k_min) of them
    c.train.top_k_min = 0.5
    c.train.top_k_every = 1000  # steps per decay (the authors': an epoch)

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.max_to_keep = 3

    c.parallel = ml_collections.ConfigDict()
    c.parallel.mode = "jit"  # jit | pmap
    c.parallel.shard_params = False  # FSDP-style: shard parameters and optimizer state over 'data'

    c.sweep = ml_collections.ConfigDict()  # launch.py --sweep (gan_jax/sweep_runner.py)
    # Train the runs of a sweep that differ only in seeds and hyperparameter values as one vmapped
    # program: True | False | None (automatically where the runs allow it).
    c.sweep.vectorize = ml_collections.FieldReference(None, field_type=bool)

    c.log = ml_collections.ConfigDict()  # where the scalars, grids and evaluations also go
    c.log.wandb = False  # Weights & Biases (pip install -e '.[wandb]'; WANDB_MODE=offline works offline)
    c.log.wandb_project = "gan-jax"
    c.log.wandb_name = ""  # '': the workdir's name
    c.log.wandb_tags = ""  # comma-separated

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 500
    c.eval.metrics = ""  # evaluators, comma-separated (gan_jax/evaluate/evaluators.py); empty: all that fit
    c.eval.every = 0  # evaluate during training every N steps (0: only with --mode=eval)
    c.eval.num_examples = ml_collections.FieldReference(None, field_type=int)  # VAE test examples; None: all
    c.eval.iwae_k = 5000  # importance samples of the VAE's -log p(x) estimate (Burda et al.)
    c.eval.num_samples = 2500  # generated samples of the sample metrics (mixture modes, classifier space)
    c.eval.truncation = 0.0  # samples and evaluators: latents truncated at this |z_i| (0: none; latents.py)
    c.eval.truncation_method = "resample"  # ... by latents.TRUNCATIONS: 'resample' or 'clip'
    c.eval.classifier = ""  # classifier space: a shipped classifier ('mnist', ...) or a .npz; '': the data's
    c.eval.inception_weights = ""  # Inception FID: pytorch-fid's weight file, 'download' (cached), '': off
    c.eval.inception_resize = "legacy"  # its 299x299 resize: 'legacy' (pytorch-fid's) or 'clean' (clean-fid's)
    # CAS (evaluator 'cas'): the budget of the classifier trained on eval.num_samples generated samples
    c.eval.cas_steps = 500
    c.eval.cas_batch_size = 64
    c.eval.cas_learning_rate = 1e-3
    return c


# Numeric fields and their accepted ranges: (low, high, low included, high included); None: unbounded.
# The model fields' ranges are declared with the models (`ranges()` has all). Fields not listed may
# take any finite value; no field accepts NaN or inf.
RANGES = {
    "seed": (0, None, True, None),
    "data.batch_size": (0, None, False, None),
    "data.seed": (0, None, True, None),
    "data.prefetch": (0, None, True, None),
    "data.num_examples": (0, None, True, None),
    "data.random_shift": (0, None, True, None),
    "loss.beta": (0, None, True, None),
    "loss.gaussian_std": (0, None, False, None),
    "loss.iwae_k": (1, None, True, None),
    "loss.elbo_samples": (1, None, True, None),
    "loss.feature_reconstruction_weight": (0, None, True, None),
    "loss.clip": (0, None, True, None),
    "loss.penalty_final_scale": (0, None, True, None),
    "eval.truncation": (0, None, True, None),
    "train.top_k_decay": (0, 1, False, True),
    "train.top_k_min": (0, 1, False, True),
    "train.top_k_every": (0, None, False, None),
    "loss.class_weight_real": (0, None, True, None),
    "loss.class_weight_fake": (0, None, True, None),
    "loss.class_weight_generator": (0, None, True, None),
    "loss.zcr_discriminator": (0, None, True, None),
    "loss.zcr_generator": (0, None, True, None),
    "loss.zcr_sigma": (0, None, False, None),
    "optimizer.learning_rate": (0, None, False, None),
    "optimizer.discriminator_learning_rate": (0, None, False, None),
    "optimizer.b1": (0, 1, True, False),
    "optimizer.b2": (0, 1, True, False),
    "optimizer.eps": (0, None, False, None),
    "optimizer.warmup_steps": (0, None, True, None),
    "optimizer.decay_factor": (1, None, True, None),
    "optimizer.min_learning_rate": (0, None, True, None),
    "optimizer.momentum": (0, 1, True, False),
    "optimizer.final_momentum": (0, 1, True, False),
    "optimizer.momentum_start": (0, None, True, None),
    "optimizer.momentum_saturate": (0, None, True, None),
    "train.steps": (0, keys.MAX_STEPS, False, True),
    "train.n_critic": (0, None, False, None),
    "train.steps_per_call": (0, None, False, None),
    "train.grad_accumulation": (1, None, True, None),
    "train.log_every": (0, None, False, None),
    "train.sample_every": (0, None, False, None),
    "train.checkpoint_every": (0, None, False, None),
    "train.max_rollbacks": (0, keys.MAX_ROLLBACKS, True, True),
    "train.ema_decay": (0, 1, True, False),
    "data.ada_target": (0, 1, True, False),
    "data.ada_interval": (1, None, True, None),
    "data.ada_kimg": (0, None, False, None),
    "train.ema_start": (0, None, True, None),
    "checkpoint.max_to_keep": (0, None, False, None),
    "eval.batch_size": (0, None, False, None),
    "eval.num_examples": (0, None, False, None),
    "eval.iwae_k": (0, None, False, None),
    "eval.num_samples": (0, None, False, None),
    "eval.every": (0, None, True, None),
    "eval.cas_steps": (0, keys.MAX_STEPS, False, True),
    "eval.cas_batch_size": (0, None, False, None),
    "eval.cas_learning_rate": (0, None, False, None),
}


def _choice(field: str, value, accepted) -> None:
    if value not in accepted:
        raise ConfigError(f"{field}={value!r} is not accepted; accepted: {', '.join(map(str, accepted))}")


def _range_text(low, high, low_in, high_in) -> str:
    if high is None:
        return f"{'>=' if low_in else '>'} {low}"
    return f"in {'[' if low_in else '('}{low}, {high}{']' if high_in else ')'}"


def ranges() -> dict[str, tuple]:
    """RANGES and the model fields' ranges (gan_jax/models: SHARED_FIELDS and each model's fields)."""
    from gan_jax import models

    return {**RANGES, **{f"model.{k}": f.range for k, f in models.field_specs().items() if f.range is not None}}


def _check_number(field: str, value, ranges: dict[str, tuple]) -> None:
    """Refuses NaN and inf anywhere, and values outside ranges[field]; None (unset) passes."""
    if value is None or isinstance(value, str):
        return
    values = value if isinstance(value, list | tuple) else [value]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if not math.isfinite(v):
            accepted = _range_text(*ranges[field]) if field in ranges else "any finite number"
            raise ConfigError(f"{field}={value!r} is not accepted; accepted: a finite number {accepted}")
        if field in ranges:
            low, high, low_in, high_in = ranges[field]
            below = v < low or (v == low and not low_in)
            above = high is not None and (v > high or (v == high and not high_in))
            if below or above:
                raise ConfigError(f"{field}={value!r} is not accepted; accepted: {_range_text(*ranges[field])}")


def _leaves(c, prefix: str = ""):
    for name, value in c.items():
        if isinstance(value, ml_collections.ConfigDict):
            yield from _leaves(value, f"{prefix}{name}.")
        else:
            yield prefix + name, value


def validate(c: ml_collections.ConfigDict) -> None:
    """Checks every field before anything is written: choices (each list from its registry), numeric
    ranges (`ranges()`) and that no number is NaN or inf. Loss, penalty and data names and shapes are
    checked where they are used."""
    # The registries import the step code: not at config import time.
    from gan_jax import latents, mixed_precision, models, objectives, penalties
    from gan_jax.objectives import base, gan_updates, labels
    from gan_jax.ops import ada
    from gan_jax.ops.resize import RESIZES

    _choice("objective", c.objective, tuple(sorted(objectives.OBJECTIVES)))
    _choice("optimizer.schedule", c.optimizer.schedule, tuple(base.SCHEDULES))
    _choice("optimizer.name", c.optimizer.name, tuple(base.OPTIMIZERS))
    _choice("parallel.mode", c.parallel.mode, PARALLEL_MODES)
    _choice("train.on_nonfinite", c.train.on_nonfinite, NONFINITE_POLICIES)
    _choice("train.update_rule", c.train.update_rule, tuple(gan_updates.UPDATE_RULES))
    _choice("train.generated_labels", c.train.generated_labels, tuple(labels.GENERATED_LABEL_RULES))
    _choice("data.ada_pipeline", c.data.ada_pipeline, tuple(ada.ADA_PIPELINES))
    _choice("train.compute_dtype", c.train.compute_dtype, tuple(mixed_precision.COMPUTE_DTYPES))
    _choice("eval.inception_resize", c.eval.inception_resize, tuple(RESIZES))
    _choice("loss.penalty_schedule", c.loss.penalty_schedule, tuple(penalties.PENALTY_SCHEDULES))
    _choice("eval.truncation_method", c.eval.truncation_method, tuple(latents.TRUNCATIONS))
    if c.loss.penalty_schedule != "constant" and not c.loss.penalties.strip():
        raise ConfigError(f"loss.penalty_schedule={c.loss.penalty_schedule!r} schedules the weights of "
                          "loss.penalties, and it names none; accepted: 'constant' without penalties")
    for name, field in models.field_specs().items():
        if field.choices is not None and c.model.get(name) is not None:
            _choice(f"model.{name}", c.model[name], field.choices)
    accepted_ranges = ranges()
    for field, value in _leaves(c):
        _check_number(field, value, accepted_ranges)
    if c.train.update_rule == "simultaneous" and c.train.n_critic != 1:
        raise ConfigError(f"train.n_critic={c.train.n_critic!r} is not accepted with "
                          "train.update_rule='simultaneous' (both networks step from one forward); accepted: 1")


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """An experiment's argument (`experiments/x.py:ARG`) as fields: 'smoke,budget=0.01' ->
    {smoke: True, budget: 0.01, ...} over `defaults` (a bare name sets a bool default to True; name=value
    takes the default's type). A tuple default is a choice, its first word unless the argument names
    another, bare or as name=word: parse_arg('grid', mixture=('ring', 'grid')).mixture == 'grid'.
    Refuses a name that is not in `defaults`, a value of the wrong type and a word no choice holds."""
    choices = {k: v for k, v in defaults.items() if isinstance(v, tuple)}
    out = ml_collections.ConfigDict({k: v[0] if k in choices else v for k, v in defaults.items()})
    accepted = ", ".join(f"{k}={'|'.join(v)}" if k in choices else k if isinstance(v, bool)
                         else f"{k}={type(v).__name__}" for k, v in defaults.items())
    for token in filter(None, (arg or "").split(",")):
        name, eq, text = token.partition("=")
        if not eq and name not in defaults:
            name, text = next(((k, name) for k, words in choices.items() if name in words), (name, text))
        if name not in defaults:
            raise ConfigError(f"experiment argument {token!r}: no {name!r}; accepted: {accepted}")
        default = defaults[name]
        try:
            if name in choices and text not in default:
                raise KeyError(text)
            if name in choices:
                value = text
            elif isinstance(default, bool):
                value = True if not eq else {"true": True, "false": False}[text.lower()]
            else:
                value = type(default)(text)
        except (KeyError, ValueError):
            kind = f"one of {', '.join(default)}" if name in choices else f"a {type(default).__name__}"
            raise ConfigError(f"experiment argument {token!r}: {text!r} is not {kind}; accepted: {accepted}") from None
        out[name] = value
    return out


# What every experiment's `smoke` variant shares: a few updates, each logged, sampled and checkpointed.
SMOKE_SCHEDULE = {"train.steps": 4, "train.log_every": 2, "train.sample_every": 2, "train.checkpoint_every": 2}


def set_fields(c: ml_collections.ConfigDict, values: dict) -> ml_collections.ConfigDict:
    """Sets `c`'s fields, named by dotted paths ({'model.widths': (8, 8)}), in place; returns `c`."""
    for field, value in values.items():
        *path, name = field.split(".")
        parent = c
        for part in path:
            parent = parent[part]
        parent[name] = value
    return c


def smoke(c: ml_collections.ConfigDict, small: dict) -> ml_collections.ConfigDict:
    """An experiment's `smoke` variant of `c` (tests, a first try of a setup), in place: SMOKE_SCHEDULE,
    then the experiment's `small` values ({'model.hidden': 16, 'eval.num_examples': 500}: its model
    and evaluations shrunk; a field of SMOKE_SCHEDULE given again there wins). Returns `c`."""
    return set_fields(c, {**SMOKE_SCHEDULE, **small})


def override(cfg: ml_collections.ConfigDict, field: str, text: str) -> None:
    """Sets `field` ('eval.metrics') of `cfg` in place from command-line text, read as the field's
    current type (bool: true/false/1/0; int, float, str; a field that is None: a Python literal, else
    the text). A field the config lacks, or text of another type, is a ConfigError naming both."""
    *path, name = field.split(".")
    parent = cfg
    for part in path:
        if part not in parent or not isinstance(parent[part], ml_collections.ConfigDict):
            raise ConfigError(f"--config.{field}: the config has no field {field!r}")
        parent = parent[part]
    if name not in parent:
        raise ConfigError(f"--config.{field}: the config has no field {field!r}")
    current = parent[name]
    try:
        if isinstance(current, bool):
            value = {"true": True, "false": False, "1": True, "0": False}[text.lower()]
        elif isinstance(current, int | float | str):
            value = type(current)(text)
        else:
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                value = text
        parent[name] = value
    except (KeyError, ValueError, TypeError):
        accepted = f"a value of type {type(current).__name__}"
        raise ConfigError(f"--config.{field}={text!r} is not accepted; accepted: {accepted}") from None
