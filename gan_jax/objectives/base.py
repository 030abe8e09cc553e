"""What every objective's pure step shares: the train state, the optimizers, the hyperparameters that
reach the step as arrays, the input preprocessing and the per-example keying.

All randomness of step N comes from fold_in(state.key, N) (the sub-folds are named in gan_jax/keys.py),
so what step N draws does not depend on how the run was split into calls, devices or processes. Noise,
dropout and flips are keyed per example over the global batch. With `axis_name` (pmap) each device
runs the same step on its slice of the global batch and gradients are averaged with `lax.pmean`."""

from collections.abc import Callable
from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from gan_jax import keys, mixed_precision
from gan_jax.data.synthetic import MIXTURES, sample_mixture, training_set_points
from gan_jax.errors import ConfigError
from gan_jax.ops import random

Hyperparameters = dict[str, jax.Array]  # name -> float32 scalar (vmappable: a sweep stacks them)


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: generator (or VAE) updates done
    key: jax.Array  # uint32 (2,): the run's base key (raw key data, so it checkpoints as an array)
    params: dict  # network name -> parameters (and gan.EMA -> G's moving average)
    batch_stats: dict  # network name -> BatchNorm statistics ({} where none)
    opt_state: dict  # network name -> optax state


def schedule_horizon(cfg: ml_collections.ConfigDict) -> int | None:
    """The updates over which learning_rate_schedule decays (compiled into the step: runs that share a
    program must agree on it), or None where the schedule does not read train.steps (constant)."""
    if cfg.optimizer.schedule in ("constant", "exponential"):
        return None
    return max(cfg.train.steps - cfg.optimizer.warmup_steps, 1)


def learning_rate_schedule(peak, cfg: ml_collections.ConfigDict) -> optax.Schedule:
    """Per-update learning rate from `peak` (a float or a traced array): linear warmup over
    optimizer.warmup_steps, then constant, linear or cosine decay to 0 at train.steps, exponential
    decay by optimizer.decay_factor per update down to optimizer.min_learning_rate, or
    exponential_stages (Burda et al. 2015, IWAE): 8 stages i = 0..7 in the proportions 3^i : 3,280 of
    the steps after the warmup, peak * 10^(-i/7) in stage i (stage i ends at round(steps * sum_{j<=i} 3^j / 3280),
    halves up)."""
    warmup, decay_steps = cfg.optimizer.warmup_steps, schedule_horizon(cfg) or 1
    decay = SCHEDULES[cfg.optimizer.schedule](peak, decay_steps, cfg.optimizer)
    if warmup == 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


_STAGES = 8  # Burda et al.'s schedule: stage i of 3^i passes over the data, 3,280 passes in all
_STAGE_ENDS = np.cumsum(3 ** np.arange(_STAGES))  # in passes: 1, 4, 13, ..., 3280
_STAGE_FACTORS = np.float32(10.0 ** (-np.arange(_STAGES) / (_STAGES - 1)))  # 1 down to 0.1


def _exponential_stages(peak, steps: int) -> optax.Schedule:
    """peak * 10^(-i/7) during stage i; the stages end at round(steps * _STAGE_ENDS / 3280), so any step
    budget keeps the paper's proportions (stages that round to no step at all are skipped)."""
    total = int(_STAGE_ENDS[-1])
    # integer arithmetic: round(steps * end / total) with halves up, exact for any step count
    ends = jnp.asarray([(2 * steps * int(e) + total) // (2 * total) for e in _STAGE_ENDS[:-1]], jnp.int32)
    factors = jnp.asarray(_STAGE_FACTORS)
    return lambda count: peak * factors[jnp.sum(count >= ends)]


def _exponential(peak, optimizer: ml_collections.ConfigDict) -> optax.Schedule:
    """pylearn2's ExponentialDecay (Goodfellow et al. 2014): max(peak / decay_factor^count, min_learning_rate)."""
    factor, floor = optimizer.decay_factor, optimizer.min_learning_rate
    return lambda count: jnp.maximum(peak / jnp.power(jnp.float32(factor), count), floor)


# optimizer.schedule: name -> (peak, decay steps, cfg.optimizer) -> the schedule after the warmup.
SCHEDULES: dict[str, Callable[[Any, int, ml_collections.ConfigDict], optax.Schedule]] = {
    "constant": lambda peak, steps, o: optax.constant_schedule(peak),
    "linear": lambda peak, steps, o: optax.linear_schedule(peak, 0.0, steps),
    "cosine": lambda peak, steps, o: optax.cosine_decay_schedule(peak, steps),
    "exponential_stages": lambda peak, steps, o: _exponential_stages(peak, steps),
    "exponential": lambda peak, steps, o: _exponential(peak, o),
}


class _PeakSchedule(optax.schedules.WrappedSchedule):
    """learning_rate_schedule with its peak passed at each update (`peak_learning_rate=`, an array), so
    that the peak is a hyperparameter of the step, not a compiled-in constant. A WrappedSchedule: the
    optimizer state has the same structure (and values) as with the plain schedule, so checkpoints
    written before the peak became an argument restore unchanged. `updates_per_step`: the network's
    updates per train step (a GAN's D: train.n_critic); the schedule advances once per step, so that it
    spans train.steps for every network (the n_critic updates of a step share a rate, as in SNGAN's code
    and mimicry)."""

    def __init__(self, cfg: ml_collections.ConfigDict, default_peak: float, updates_per_step: int = 1):
        self.cfg, self.default_peak, self.updates_per_step = cfg, default_peak, updates_per_step

    def __call__(self, state, peak_learning_rate=None, **extra_args):
        peak = self.default_peak if peak_learning_rate is None else peak_learning_rate
        step = state.count if self.updates_per_step == 1 else state.count // self.updates_per_step
        return learning_rate_schedule(peak, self.cfg)(step)


class MomentumState(NamedTuple):
    velocity: Any  # the parameters' tree: the last update


def pylearn2_momentum(learning_rate, momentum) -> optax.GradientTransformation:
    """SGD with momentum as pylearn2's learning rule (Goodfellow et al. 2014 trained with it):
    v <- momentum * v - learning_rate * g, update = v. Unlike optax.sgd's trace, a new learning rate
    scales only the new gradient, not the velocity."""
    def init(params):
        return MomentumState(jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params=None):
        velocity = jax.tree.map(lambda v, g: momentum * v - learning_rate * g, state.velocity, grads)
        return velocity, MomentumState(velocity)

    return optax.GradientTransformation(init, update)


class _MomentumSchedule(optax.schedules.WrappedSchedule):
    """optimizer.momentum until update optimizer.momentum_start, then linearly to optimizer.final_momentum
    at update optimizer.momentum_saturate (pylearn2's MomentumAdjustor, counted in updates)."""

    def __init__(self, o: ml_collections.ConfigDict):
        start, end = o.momentum_start, max(o.momentum_saturate, o.momentum_start + 1)
        self.schedule = optax.linear_schedule(o.momentum, o.final_momentum, end - start, transition_begin=start)

    def __call__(self, state, **extra_args):
        return self.schedule(state.count)


# optimizer.name: name -> (cfg.optimizer, the learning-rate schedule) -> each network's optimizer.
OPTIMIZERS: dict[str, Callable[[ml_collections.ConfigDict, optax.Schedule], optax.GradientTransformation]] = {
    "adam": lambda o, lr: optax.inject_hyperparams(optax.adam)(learning_rate=lr, b1=o.b1, b2=o.b2, eps=o.eps),
    "momentum": lambda o, lr: optax.inject_hyperparams(pylearn2_momentum)(learning_rate=lr,
                                                                          momentum=_MomentumSchedule(o)),
}


def make_optimizers(cfg: ml_collections.ConfigDict, names: tuple[str, ...]) -> dict[str, optax.GradientTransformation]:
    """optimizer.name's optimizer per network, its learning rate from the schedule of the peak that
    `apply_updates` passes, indexed by train step (the discriminator updates train.n_critic times a step)."""
    peaks = peak_learning_rates(cfg, names)
    make = OPTIMIZERS[cfg.optimizer.get("name", "adam")]
    per_step = {name: cfg.train.n_critic if name == "discriminator" else 1 for name in names}
    return {name: make(cfg.optimizer, _PeakSchedule(cfg, float(peaks[f"lr_{name}"]), per_step[name]))
            for name in names}


def peak_learning_rates(cfg: ml_collections.ConfigDict, names: tuple[str, ...]) -> Hyperparameters:
    """{'lr_NAME': peak} per network; the discriminator may have its own (TTUR)."""
    out = {}
    for name in names:
        peak = cfg.optimizer.learning_rate
        if name == "discriminator" and cfg.optimizer.discriminator_learning_rate is not None:
            peak = cfg.optimizer.discriminator_learning_rate
        out[f"lr_{name}"] = np.float32(peak)
    return out


def apply_updates(params, opt_state, grads, optimizer: optax.GradientTransformation, peak_lr: jax.Array):
    """One optimizer update at the learning rate schedule(peak_lr)(updates done)."""
    updates, opt_state = optimizer.update(grads, opt_state, params, peak_learning_rate=peak_lr)
    return optax.apply_updates(params, updates), opt_state


def learning_rate(opt_state) -> jax.Array:
    """The learning rate the last update used (for logging)."""
    return opt_state.hyperparams["learning_rate"]


def to_model_range(images_u8: jnp.ndarray, unit_range: bool = False) -> jnp.ndarray:
    """uint8 -> float32 in [-1, 1] (tanh outputs) or, with unit_range, [0, 1] (Bernoulli means)."""
    x = images_u8.astype(jnp.float32) / 255.0
    return x if unit_range else 2.0 * x - 1.0


def example_ids(local_batch: int, axis_name: str | None) -> jnp.ndarray:
    """Global indices of this device's examples (keys are folded with them)."""
    ids = jnp.arange(local_batch)
    return ids if axis_name is None else ids + jax.lax.axis_index(axis_name) * local_batch


def global_normal(key: jax.Array, global_batch: int, dim: int, local_batch: int, axis_name: str | None):
    """Rows of an (global_batch, dim) N(0, I) draw that belong to this device."""
    z = jax.random.normal(key, (global_batch, dim))
    if axis_name is None:
        return z
    return jax.lax.dynamic_slice_in_dim(z, jax.lax.axis_index(axis_name) * local_batch, local_batch)


def global_labels(key: jax.Array, global_batch: int, num_classes: int, local_batch: int, axis_name: str | None):
    """Rows of a (global_batch,) int32 draw of classes, uniform over [0, num_classes), that belong to this
    device: the generated batch's labels, the same however the batch is split over devices."""
    labels = jax.random.randint(key, (global_batch,), 0, num_classes, jnp.int32)
    if axis_name is None:
        return labels
    return jax.lax.dynamic_slice_in_dim(labels, jax.lax.axis_index(axis_name) * local_batch, local_batch)


def random_flip(key: jax.Array, x: jnp.ndarray, axis_name: str | None) -> jnp.ndarray:
    ids = example_ids(x.shape[0], axis_name)
    flip = jax.vmap(lambda i: jax.random.bernoulli(jax.random.fold_in(key, i)))(ids)
    return jnp.where(flip[:, None, None, None], x[:, :, ::-1, :], x)


def micro_batches(tree, k: int):
    """Every leaf (n, ...) -> (k, n / k, ...), micro-batch j holding rows j, j + k, j + 2k, ...: a batch
    sharded over devices in contiguous blocks (jit) leaves every micro-batch spread over all of them."""
    return jax.tree.map(lambda a: a.reshape(a.shape[0] // k, k, *a.shape[1:]).swapaxes(0, 1), tree)


def pmean(tree, axis_name):
    return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def all_finite(tree) -> jnp.ndarray:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


class Steps:
    """Base of an objective's step builder: what its pure steps close over (networks, optimizers,
    static config) and the step itself, `train_step`, written once here. A subclass supplies
    `init_state(seed)`, its update `update_step`, its sampler `sample_fn` and its hyperparameters
    (`HYPERPARAMETERS` and `hyperparameters()`, extended)."""

    unit_range = False  # model range [0, 1] instead of [-1, 1]
    # Whether update_step averages its gradients over train.grad_accumulation micro-batches (`accumulate`);
    # a subclass that replaces update_step without calling it sets False.
    accumulates_gradients = False
    # The step's hyperparameter arrays, declared beside the code that reads them: array name -> the config
    # field its value comes from, or (field, compiled) where compiled(value) is the part of the field
    # still compiled into the step. Runs that differ only in these fields share one compiled program
    # (gan_jax/vectorized.py). A subclass's mapping adds to its bases'; lr_NETWORK is per trained network.
    HYPERPARAMETERS: dict[str, str | tuple[str, Callable]] = {
        "lr_NETWORK": "optimizer.learning_rate", "lr_discriminator": "optimizer.discriminator_learning_rate"}

    def __init__(self, cfg: ml_collections.ConfigDict, nets: dict, example_shape: tuple[int, ...],
                 mixture: str | None = None, binarize: bool = False, axis_name: str | None = None):
        self.cfg, self.example_shape = cfg, example_shape
        self.nets = mixed_precision.with_compute_dtype(nets, cfg.train.compute_dtype)
        self.mixture, self.binarize, self.axis_name = mixture, binarize, axis_name
        if cfg.data.num_examples and mixture is None and len(example_shape) != 3:
            raise ConfigError(f"data.num_examples={cfg.data.num_examples!r} is a fixed training set of 2D mixture "
                              f"points or the first images of a split, and data.name={cfg.data.name!r} is neither; "
                              f"accepted: 0 (or a 2D mixture: {', '.join(MIXTURES)}, or images)")
        self.optimizers = make_optimizers(cfg, tuple(nets))
        self.global_batch = cfg.data.batch_size
        self._check_grad_accumulation(cfg.train.grad_accumulation)

    def _check_grad_accumulation(self, k: int) -> None:
        field = f"train.grad_accumulation={k!r}"
        if k > 1 and not self.accumulates_gradients:
            raise ConfigError(f"{field}: objective {self.cfg.objective!r} takes its gradients on the whole batch; "
                              "accepted: 1 for it")
        # Under pmap each device splits its share; under jit the global batch is split (every micro-batch
        # spread over the devices: micro_batches).
        batch = self.global_batch // jax.device_count() if self.axis_name else self.global_batch
        if batch % k:
            where = f" / {jax.device_count()} devices under pmap" if self.axis_name else ""
            raise ConfigError(f"{field} does not divide the batch each program splits ({batch} = data.batch_size "
                              f"{self.global_batch}{where}); accepted: a divisor of it")

    def accumulate(self, grads_fn: Callable, part, key: jax.Array):
        """grads_fn(part, key) -> (gradients, aux) on the local batch `part` (arrays with the examples on
        their first axis; aux: metrics and new statistics), or with train.grad_accumulation = k > 1 their
        means over k micro-batches (micro_batches), one after another in a lax.scan so that the activations
        of one micro-batch at a time are live; micro-batch j is keyed fold_in(key, j). Averaging is what
        the whole batch gives for the batch means a loss is made of, and for a running average (BatchNorm's,
        LeCam's) moved by each micro-batch from the same start: it moves once, by the mean of their
        statistics. A BatchNorm layer normalizes by its micro-batch's statistics (as BigGAN-PyTorch's
        accumulation), and per-example draws are keyed within a micro-batch: equal to the whole batch's
        step where the networks have neither (tests/test_grad_accumulation.py)."""
        k = self.cfg.train.grad_accumulation
        if k == 1:
            return grads_fn(part, key)

        def one(total, xs):
            j, micro = xs
            grads, aux = grads_fn(micro, jax.random.fold_in(key, j))
            return jax.tree.map(jnp.add, total, grads), aux

        micro = micro_batches(part, k)
        first = jax.tree.map(lambda a: a[0], micro)
        grad_shapes = jax.eval_shape(lambda m: grads_fn(m, key)[0], first)
        zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), grad_shapes)
        total, aux = jax.lax.scan(one, zeros, (jnp.arange(k), micro))
        return jax.tree.map(lambda g: g / k, total), jax.tree.map(lambda a: jnp.mean(a, axis=0), aux)

    @classmethod
    def hyperparameter_fields(cls) -> dict[str, Callable | None]:
        """Config field -> None (its whole value reaches the step as arrays) or the function giving
        the part of its value compiled in, over the HYPERPARAMETERS of this class and its bases."""
        fields = {}
        for klass in reversed(cls.__mro__):
            for spec in vars(klass).get("HYPERPARAMETERS", {}).values():
                field, compiled = (spec, None) if isinstance(spec, str) else spec
                fields[field] = compiled
        return fields

    def hyperparameters(self) -> Hyperparameters:
        """The values the step reads as arrays (not compiled in): peak learning rates, loss weights."""
        return peak_learning_rates(self.cfg, tuple(self.nets))

    def update(self, name: str, params: dict, opt_state: dict, grads, hp: Hyperparameters) -> None:
        """Applies network `name`'s gradients (averaged over devices) in place in params/opt_state."""
        params[name], opt_state[name] = apply_updates(params[name], opt_state[name], pmean(grads, self.axis_name),
                                                      self.optimizers[name], hp[f"lr_{name}"])

    def real_examples(self, key: jax.Array, batch_u8: jnp.ndarray | None,
                      base_key: jax.Array | None = None) -> jnp.ndarray:
        """The model-range real batch (local_batch, *example_shape) of one update. 2D mixtures: fresh
        points from `key`, or with data.num_examples = N > 0 points of the run's fixed training set
        (named by `base_key`, the run's state.key): `key` draws the global batch's example indices
        uniformly from [0, N) *with replacement* (not epochs: an index depends on (key, position)
        alone, whatever the device count). A rollback's fresh state.key draws a new training set."""
        if self.mixture is not None:
            if self.cfg.data.num_examples:
                if base_key is None:
                    raise ValueError("real_examples: data.num_examples > 0 trains on the run's training set, "
                                     "named by its base key; pass base_key=state.key")
                ids = jax.random.randint(key, (self.global_batch,), 0, self.cfg.data.num_examples)
                points = training_set_points(self.mixture, base_key, ids)
            else:
                points = sample_mixture(self.mixture, key, self.global_batch)
            if self.axis_name is None:
                return points
            local_batch = self.global_batch // jax.lax.psum(1, self.axis_name)
            return jax.lax.dynamic_slice_in_dim(points, jax.lax.axis_index(self.axis_name) * local_batch,
                                                local_batch)
        x = to_model_range(batch_u8, self.unit_range)
        if self.cfg.data.random_flip:
            x = random_flip(jax.random.fold_in(key, keys.FLIP), x, self.axis_name)
        if self.binarize:
            ids = example_ids(x.shape[0], self.axis_name)
            # bernoulli(p) is uniform < p; vmapping only over the ids keeps x's sharding out of the vmap.
            u = jax.vmap(lambda i: random.uniform(jax.random.fold_in(key, i), x.shape[1:]))(ids)
            x = (u < x).astype(jnp.float32)
        return x

    def local_batch(self, batch_u8: jnp.ndarray | None) -> int:
        if batch_u8 is not None:
            return batch_u8.shape[1]
        return self.global_batch if self.axis_name is None else self.global_batch // jax.lax.psum(1, self.axis_name)

    def train_step(self, state: TrainState, batch, hp: Hyperparameters | None = None) -> tuple[TrainState, dict]:
        """One update of every network the objective trains: its batch (objective-specific, with a
        leading (n_critic or 1,) axis; None for synthetic data), `hp` from `hyperparameters()` (default:
        its values, compiled in). Returns the new state and scalar metrics, averaged over devices,
        with metrics['finite']: every parameter and metric finite."""
        hp = self.hyperparameters() if hp is None else hp
        step_key = jax.random.fold_in(state.key, state.step)  # all of step N's randomness (keys.py)
        params, stats, opt_state = dict(state.params), dict(state.batch_stats), dict(state.opt_state)
        metrics = pmean(self.update_step(params, stats, opt_state, batch, step_key, state, hp), self.axis_name)
        metrics["finite"] = all_finite(params) & all_finite(metrics)
        return TrainState(state.step + 1, state.key, params, stats, opt_state), metrics

    def update_step(self, params: dict, stats: dict, opt_state: dict, batch, step_key: jax.Array,
                    state: TrainState, hp: Hyperparameters) -> dict:
        """The objective's update: replaces entries of params, stats (BatchNorm statistics) and opt_state
        (copies of the state's, network name -> tree) in place and returns this device's scalar
        metrics, each loss the value that was differentiated. step_key = fold_in(state.key, state.step)."""
        raise NotImplementedError

    def multi_step(self, state: TrainState, batches, hp: Hyperparameters | None = None,
                   length: int | None = None) -> tuple[TrainState, dict]:
        """K = `length` (default `train.steps_per_call`) updates in one dispatch: batches with a leading
        (K,) axis, or None for synthetic data; hp from `hyperparameters()` (default: its values,
        compiled in). Metrics come back stacked (K,)."""
        hp = self.hyperparameters() if hp is None else hp
        k = self.cfg.train.steps_per_call if length is None else length
        if k == 1:  # no scan: XLA:CPU runs a step's convolutions far slower inside a loop
            state, metrics = self.train_step(state, None if batches is None else jax.tree.map(lambda a: a[0], batches),
                                             hp)
            return state, jax.tree.map(lambda m: m[None], metrics)
        return jax.lax.scan(lambda s, b: self.train_step(s, b, hp), state, batches, length=k)

    def sample_fn(self) -> Callable[..., jnp.ndarray] | None:
        """(state, z (N, latent_dim)) -> samples in model range, networks in inference mode, and for a
        class-conditional model (state, z, labels (N,) int32); None if the objective generates nothing."""
        return None

    def encode_fn(self) -> Callable[[TrainState, jnp.ndarray], jnp.ndarray] | None:
        """(state, x (N, *example_shape) in model range) -> the posterior mean (N, latent_dim), networks in
        inference mode, so that sample_fn(state, encode_fn(state, x)) reconstructs x; None without an encoder."""
        return None
