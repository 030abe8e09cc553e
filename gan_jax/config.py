"""The config schema: `base_config()` holds every field and its default, so that experiments only
choose values and any field can be overridden on the command line (`--config.train.steps=100`);
`validate()` refuses bad values with one line that names the field, the value and what is accepted."""

import ml_collections

from gan_jax.errors import ConfigError

OBJECTIVES = ("gan", "dcgan", "vae")
SCHEDULES = ("constant", "linear", "cosine")
PARALLEL_MODES = ("jit", "pmap")
NONFINITE_POLICIES = ("stop", "rollback")
UPDATE_RULES = ("alternating", "simultaneous")


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.objective = "dcgan"
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.name = "mnist"
    c.data.source = "files"  # files | tfds | synthetic | embedded
    c.data.dir = ml_collections.FieldReference(None, field_type=str)
    c.data.split = "train"
    c.data.eval_split = "test"
    c.data.batch_size = 64  # the global batch, over all devices and hosts
    c.data.random_flip = False
    c.data.seed = ml_collections.FieldReference(None, field_type=int)  # None: the run's seed
    c.data.prefetch = 2

    c.model = ml_collections.ConfigDict()
    c.model.name = "dcgan_tutorial"
    c.model.latent_dim = 100
    c.model.conv_impl = "auto"  # auto | lax | cpu_fast | dft (gan_jax/ops/conv.py)

    c.loss = ml_collections.ConfigDict()
    c.loss.name = "non_saturating"  # GANs: see losses.GAN_LOSSES; VAEs: 'elbo'
    c.loss.likelihood = "bernoulli"  # VAE: bernoulli | gaussian
    c.loss.beta = 1.0  # VAE: weight of the KL term (1: VAE, else beta-VAE)
    c.loss.gaussian_std = 0.1

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.learning_rate = 2e-4
    c.optimizer.discriminator_learning_rate = ml_collections.FieldReference(None, field_type=float)
    c.optimizer.b1 = 0.5
    c.optimizer.b2 = 0.999
    c.optimizer.eps = 1e-8
    c.optimizer.schedule = "constant"  # constant | linear | cosine (decay to 0 at train.steps)
    c.optimizer.warmup_steps = 0

    c.train = ml_collections.ConfigDict()
    c.train.steps = 10_000  # generator (or VAE) updates
    c.train.n_critic = 1  # discriminator updates per generator update
    c.train.update_rule = "alternating"  # D, then G against the new D | simultaneous: both from one forward
    c.train.steps_per_call = 1  # steps per dispatch, run with lax.scan
    c.train.log_every = 100
    c.train.sample_every = 1000
    c.train.checkpoint_every = 1000
    c.train.on_nonfinite = "stop"  # stop | rollback
    c.train.max_rollbacks = 3

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.max_to_keep = 3

    c.parallel = ml_collections.ConfigDict()
    c.parallel.mode = "jit"  # jit | pmap
    c.parallel.shard_params = False  # FSDP-style: shard parameters and optimizer state over 'data'

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 500
    return c


def _choice(field: str, value, accepted) -> None:
    if value not in accepted:
        raise ConfigError(f"{field}={value!r} is not accepted; accepted: {', '.join(map(str, accepted))}")


def _positive(field: str, value, allow_zero: bool = False) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{field}={value!r} must be a {'non-negative' if allow_zero else 'positive'} number")


def validate(c: ml_collections.ConfigDict) -> None:
    """Checks the fields every run relies on; names, registries and shapes are checked where they are used."""
    _choice("objective", c.objective, OBJECTIVES)
    _choice("optimizer.schedule", c.optimizer.schedule, SCHEDULES)
    _choice("parallel.mode", c.parallel.mode, PARALLEL_MODES)
    _choice("train.on_nonfinite", c.train.on_nonfinite, NONFINITE_POLICIES)
    _choice("model.conv_impl", c.model.conv_impl, ("auto", "lax", "cpu_fast", "dft"))
    _choice("train.update_rule", c.train.update_rule, UPDATE_RULES)
    for field in ("data.batch_size", "train.steps", "train.n_critic", "train.steps_per_call", "train.log_every",
                  "train.sample_every", "train.checkpoint_every", "checkpoint.max_to_keep", "eval.batch_size",
                  "optimizer.learning_rate", "model.latent_dim"):
        section, name = field.split(".")
        _positive(field, c[section][name])
    _positive("optimizer.warmup_steps", c.optimizer.warmup_steps, allow_zero=True)
    _positive("train.max_rollbacks", c.train.max_rollbacks, allow_zero=True)
    if c.train.update_rule == "simultaneous" and c.train.n_critic != 1:
        raise ConfigError(f"train.n_critic={c.train.n_critic!r} is not accepted with "
                          "train.update_rule='simultaneous' (both networks step from one forward); accepted: 1")
    if c.optimizer.discriminator_learning_rate is not None:
        _positive("optimizer.discriminator_learning_rate", c.optimizer.discriminator_learning_rate)
    if c.objective == "vae" and c.loss.name != "elbo":
        raise ConfigError(f"loss.name={c.loss.name!r} is not accepted for objective='vae'; accepted: elbo")
