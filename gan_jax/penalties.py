"""Discriminator penalties, registered by name. A penalty is one pure function of the critic and a
real and a fake batch that returns a scalar the step adds, times its weight, to D's loss:

    @register_penalty("r1")
    def r1(critic, real, fake, key, example_ids, *, axis_name=None):
        ...

    critic       x (N, *shape) -> logits (N,): D with its current parameters closed over, so that
                 the gradient of the penalty w.r.t. those parameters (double backprop) is D's.
                 Its examples must be independent of each other (no batch statistics such as
                 train-mode BatchNorm or a minibatch-stddev layer): the input gradient of example i
                 is taken as d sum_j critic(x)_j / d x_i, which is d critic(x)_i / d x_i only then.
    real, fake   (N, *shape) float batches in model range; no gradient flows back into either (the
                 generator gets none from a penalty).
    key          a PRNG key for this penalty in this update.
    example_ids  (N,) int32 global example indices: every random draw of example i comes from
                 fold_in(key, example_ids[i]), so a batch split over devices draws the same numbers
                 as the whole batch on one device.
    axis_name    the pmap axis, or None; accepted by every penalty so that the step calls them all
                 alike, used only by those that couple the examples of a batch (DRAGAN's batch
                 standard deviation is taken over the global batch with it).

Gradient norms are L2 over all non-batch axes; values are in squared (logit per input unit) units.
For a class-conditional D the critic is conditioned on the labels of the batch the penalty's inputs
come from, registered with it (`register_penalty(name, batch='fake')` for R2): the real batch's for
R1 and for the points WGAN-GP and DRAGAN build around real examples (StudioGAN's convention).
`parse_penalties` reads the config string loss.penalties ("r1:10:16,r2:1"); `loss.penalty_schedule` moves
every weight from its value there to `loss.penalty_final_scale` times it over the run (`schedule_scale`).

A penalty with state across updates (LeCam's moving anchors) is registered with `state=`, a function
returning its initial state (a dict of float32 scalars, kept in the train state and checkpointed). It
is called with two more keywords, `state` (before this D update) and `logits` (the (N,) real and (N,)
generated logits of D's adversarial loss in this update, so that no extra forward is run), and returns
(value, new state)."""

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from gan_jax.errors import ConfigError
from gan_jax.ops import random

Critic = Callable[[jax.Array], jax.Array]
Penalty = Callable[..., jax.Array]
PENALTIES: dict[str, Penalty] = {}
ON_FAKE: set[str] = set()  # the penalties whose critic is conditioned on the generated batch's labels
ON_BOTH: set[str] = set()  # ... that judge both batches: they also take fake_critic=
IMAGES_ONLY: set[str] = set()  # the penalties that transform images (N, H, W, C)
STATEFUL: dict[str, Callable[[], dict]] = {}  # the penalties with state: name -> its initial state
STATE = "penalties"  # their states' entry (name -> state) in D's batch statistics (objectives/gan.py)


def register_penalty(name: str, batch: str = "real", images_only: bool = False,
                     state: Callable[[], dict] | None = None) -> Callable[[Penalty], Penalty]:
    """`batch`: 'real', 'fake' or 'both', the batch whose labels condition a class-conditional critic
    ('both': the penalty takes the generated batch's critic as the keyword fake_critic). `state`: the
    initial state of a stateful penalty (module docstring)."""
    def wrap(fn: Penalty) -> Penalty:
        PENALTIES[name] = fn
        {"real": set(), "fake": ON_FAKE, "both": ON_BOTH}[batch].add(name)
        if images_only:
            IMAGES_ONLY.add(name)
        if state is not None:
            STATEFUL[name] = state
        return fn

    return wrap


def get_penalty(name: str, spec: str | None = None) -> Penalty:
    """The penalty registered as `name`; `spec` is the whole loss.penalties string, for the message."""
    if name not in PENALTIES:
        field = "loss.penalties" if spec is None else f"loss.penalties={spec!r}"
        raise ConfigError(f"{field}: {name!r} is unknown; accepted: {', '.join(sorted(PENALTIES))}")
    return PENALTIES[name]


# --- helpers ---------------------------------------------------------------------------------

def _input_grads(critic: Critic, x: jax.Array) -> jax.Array:
    """(N, *shape) -> (N, *shape): row i is d critic(x)_i / d x_i (examples independent)."""
    return jax.grad(lambda x: jnp.sum(critic(x)))(x)


def _squared_norms(g: jax.Array) -> jax.Array:
    """(N, *shape) -> (N,): ||g_i||_2^2 over all non-batch axes."""
    return jnp.sum(jnp.square(g), axis=tuple(range(1, g.ndim)))


def _norms(g: jax.Array) -> jax.Array:
    """(N, *shape) -> (N,): ||g_i||_2, with gradient 0 (not NaN) where g_i = 0."""
    sq = _squared_norms(g)
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def _per_example(x: jax.Array, v: jax.Array) -> jax.Array:
    """(N,) -> (N, 1, ..., 1), broadcastable against x (N, *shape)."""
    return v.reshape((-1,) + (1,) * (x.ndim - 1)).astype(x.dtype)


def _example_keys(key: jax.Array, example_ids: jax.Array) -> jax.Array:
    """One key per example: fold_in(key, example_ids[i])."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(example_ids)


def _interpolation_weights(keys: jax.Array) -> jax.Array:
    """(N,) float32 in [0, 1): one U[0, 1) draw per example key."""
    return jax.vmap(lambda k: jax.random.uniform(k, (), jnp.float32))(keys)


# --- penalties -------------------------------------------------------------------------------

@register_penalty("wgan_gp")
def wgan_gp(critic: Critic, real: jax.Array, fake: jax.Array, key: jax.Array, example_ids: jax.Array, *,
            axis_name: str | None = None) -> jax.Array:
    """Gradient penalty of WGAN-GP: Gulrajani et al., "Improved Training of Wasserstein GANs",
    NeurIPS 2017, eq. (3) and Algorithm 1 (lambda = 10 there):
        x_hat_i = eps_i * real_i + (1 - eps_i) * fake_i,  eps_i ~ U[0, 1), ONE per example,
        penalty = mean_i (||grad_x critic(x_hat_i)||_2 - 1)^2.
    eps_i = uniform(fold_in(key, example_ids[i])). The official code (igul222/improved_wgan_training)
    writes real + eps * (fake - real), the mirror image: the same distribution of x_hat.
    fake is stop_gradient'ed: the generator gets no gradient from this term; D does. A zero input
    gradient has norm 0 with gradient 0 (penalty 1), not NaN. axis_name is unused."""
    real, fake = lax.stop_gradient(real), lax.stop_gradient(fake)
    eps = _per_example(real, _interpolation_weights(_example_keys(key, example_ids)))
    x_hat = eps * real + (1 - eps) * fake
    return jnp.mean(jnp.square(_norms(_input_grads(critic, x_hat)) - 1))


def _half_mean_squared_gradient(critic: Critic, x: jax.Array) -> jax.Array:
    return 0.5 * jnp.mean(_squared_norms(_input_grads(critic, lax.stop_gradient(x))))


@register_penalty("r1")
def r1(critic: Critic, real: jax.Array, fake: jax.Array, key: jax.Array, example_ids: jax.Array, *,
       axis_name: str | None = None) -> jax.Array:
    """R1: Mescheder et al., "Which Training Methods for GANs do actually Converge?", ICML 2018:
    R1 = gamma/2 * E_real ||grad_x D(x)||^2. Here penalty = 1/2 * mean_i ||grad_x critic(real_i)||_2^2,
    so the weight in loss.penalties IS gamma (the paper's gamma = 10 is "r1:10"; StyleGAN2's r1_gamma
    is the same number). The official code (LMescheder/GAN_stability, train.py) multiplies the full
    mean squared norm by reg_param, without the 1/2: its reg_param = 10 is "r1:20" here.
    Deterministic: key, example_ids and axis_name are unused."""
    return _half_mean_squared_gradient(critic, real)


@register_penalty("r2", batch="fake")
def r2(critic: Critic, real: jax.Array, fake: jax.Array, key: jax.Array, example_ids: jax.Array, *,
       axis_name: str | None = None) -> jax.Array:
    """R2: Mescheder et al. 2018 (as r1): R2 = gamma/2 * E_fake ||grad_x D(x)||^2.
    penalty = 1/2 * mean_i ||grad_x critic(fake_i)||_2^2 (weight = gamma); fake is stop_gradient'ed,
    so the generator gets no gradient from it. Deterministic: key, example_ids, axis_name unused."""
    return _half_mean_squared_gradient(critic, fake)


@register_penalty("dragan")
def dragan(critic: Critic, real: jax.Array, fake: jax.Array, key: jax.Array, example_ids: jax.Array, *,
           axis_name: str | None = None) -> jax.Array:
    """DRAGAN: Kodali et al., "On Convergence and Stability of GANs", arXiv:1705.07215 (2017), in
    the variant of their official code (kodalinaveen3/DRAGAN, DRAGAN.ipynb; lambda = 10 there), not
    the paper's. The paper penalizes (||grad D(x + delta)|| - 1)^2 with delta ~ N(0, cI); the code:
        perturbed_i = real_i + 0.5 * std * u_i,       u_i ~ U[0, 1) per pixel (one-sided noise),
        x_hat_i = alpha_i * real_i + (1 - alpha_i) * perturbed_i,  alpha_i ~ U[0, 1) per example,
        penalty = mean_i (||grad_x critic(x_hat_i)||_2 - 1)^2.
    (The code writes real + alpha * (perturbed - real): the same distribution of x_hat.)
    alpha_i and u_i come from the two halves of split(fold_in(key, example_ids[i])).
    std is the population standard deviation (ddof = 0, numpy's `minibatch.std()` in their code) of
    all N * prod(shape) values of `real`, one number for the batch, held constant (stop_gradient;
    their code computes it in numpy). fake is unused.
    Limitation: std couples the examples of the batch. Under jit over a sharded global batch it is
    the global std; under pmap each device would use its own shard's std unless axis_name is given,
    in which case the mean and the mean squared deviation are lax.pmean'd over that axis (the global
    std when every device holds the same number of examples)."""
    real = lax.stop_gradient(real)
    mean = jnp.mean(real)
    if axis_name is not None:
        mean = lax.pmean(mean, axis_name)
    var = jnp.mean(jnp.square(real - mean))
    if axis_name is not None:
        var = lax.pmean(var, axis_name)
    std = lax.stop_gradient(jnp.sqrt(var))

    keys = jax.vmap(jax.random.split)(_example_keys(key, example_ids))  # (N, 2) keys
    alpha = _per_example(real, _interpolation_weights(keys[:, 0]))
    noise = jax.vmap(lambda k: random.uniform(k, real.shape[1:]))(keys[:, 1]).astype(real.dtype)
    perturbed = real + 0.5 * std * noise
    x_hat = alpha * real + (1 - alpha) * perturbed
    return jnp.mean(jnp.square(_norms(_input_grads(critic, x_hat)) - 1))


def flip_and_shift(x: jax.Array, key: jax.Array, example_ids: jax.Array) -> jax.Array:
    """Consistency regularization's T (Zhang et al. 2020, CIFAR-10: "randomly shifting the image by a
    few pixels and flipping horizontally"): x (N, H, W, C) -> each image flipped left-right with
    probability 1/2, then shifted by integers in [-s, s] on each axis, s = max(H // 8, 1) (4 pixels at
    32x32), with reflection padding. Example i draws (flip, dy, dx) from fold_in(key, example_ids[i])."""
    s = max(x.shape[1] // 8, 1)

    def one(image: jax.Array, k: jax.Array) -> jax.Array:
        k_flip, k_shift = jax.random.split(k)
        image = jnp.where(jax.random.bernoulli(k_flip), image[:, ::-1], image)
        dy, dx = jax.random.randint(k_shift, (2,), 0, 2 * s + 1)
        padded = jnp.pad(image, ((s, s), (s, s), (0, 0)), mode="reflect")
        return lax.dynamic_slice(padded, (dy, dx, 0), image.shape)

    return jax.vmap(one)(x, _example_keys(key, example_ids))


@register_penalty("cr", images_only=True)
def cr(critic: Critic, real: jax.Array, fake: jax.Array, key: jax.Array, example_ids: jax.Array, *,
       axis_name: str | None = None) -> jax.Array:
    """CR: Zhang et al., "Consistency Regularization for Generative Adversarial Networks", ICLR 2020:
    lambda * E_real ||D(x) - D(T(x))||^2 on D's logits, T = flip_and_shift; penalty = mean_i
    (critic(real_i) - critic(T(real_i)))^2, both forwards differentiated (the paper's lambda = 10 is
    "cr:10")."""
    real = lax.stop_gradient(real)
    return jnp.mean(jnp.square(critic(real) - critic(flip_and_shift(real, key, example_ids))))


@register_penalty("bcr", batch="both", images_only=True)
def bcr(critic: Critic, real: jax.Array, fake: jax.Array, key: jax.Array, example_ids: jax.Array, *,
        axis_name: str | None = None, fake_critic: Critic | None = None) -> jax.Array:
    """bCR: Zhao et al., "Improved Consistency Regularization for GANs", AAAI 2021: CR on the real batch
    plus the same on the generated batch (lambda_real = lambda_fake = the weight; the paper's 10 is
    "bcr:10"), the generated images' critic conditioned on their labels. The generated batch draws its
    T from fold_in(key, 1) (the real one's from key)."""
    fake = lax.stop_gradient(fake)
    fake_critic = fake_critic or critic
    fake_term = jnp.mean(jnp.square(fake_critic(fake) - fake_critic(flip_and_shift(
        fake, jax.random.fold_in(key, 1), example_ids))))
    return cr(critic, real, fake, key, example_ids) + fake_term


# LeCam's anchors: moving averages of D's mean outputs, with TF's zero-debiasing (the official code's
# assign_moving_average(..., decay=0.99, zero_debias=True)).
LECAM_DECAY = 0.99


@register_penalty("lecam", state=lambda: {side: jnp.zeros((), jnp.float32) for side in ("real", "fake", "updates")})
def lecam(critic: Critic, real: jax.Array, fake: jax.Array, key: jax.Array, example_ids: jax.Array, *,
          axis_name: str | None = None, state: dict, logits: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, dict]:
    """LeCam: Tseng et al., "Regularizing Generative Adversarial Networks under Limited Data", CVPR 2021,
    eq. (3), as in their code (google/lecam-gan, stylegan2/lecam_loss.py; lambda = 0.3 for BigGAN on
    CIFAR-10, "lecam:0.3"):
        a_R, a_F = zero-debiased moving averages (decay 0.99) of mean_i D(real_i) and mean_i D(fake_i),
                   updated with this update's batch first (state: the biased sums and the update count),
        penalty  = mean_i relu(D(real_i) - a_F)^2 + mean_i relu(a_R - D(fake_i))^2,
    on `logits`, the adversarial loss's own logits (gradients reach D through them, not the anchors).
    The batch means are over the global batch (lax.pmean over axis_name under pmap). critic, real,
    fake, key and example_ids are unused."""
    real_logits, fake_logits = (x.astype(jnp.float32) for x in logits)
    mean_real, mean_fake = lax.stop_gradient((jnp.mean(real_logits), jnp.mean(fake_logits)))
    if axis_name is not None:
        mean_real, mean_fake = lax.pmean((mean_real, mean_fake), axis_name)
    updates = state["updates"] + 1
    biased = {"real": LECAM_DECAY * state["real"] + (1 - LECAM_DECAY) * mean_real,
              "fake": LECAM_DECAY * state["fake"] + (1 - LECAM_DECAY) * mean_fake}
    debias = 1 - LECAM_DECAY ** updates
    anchor_real, anchor_fake = biased["real"] / debias, biased["fake"] / debias
    value = (jnp.mean(jnp.square(jax.nn.relu(real_logits - anchor_fake)))
             + jnp.mean(jnp.square(jax.nn.relu(anchor_real - fake_logits))))
    return value, {**biased, "updates": updates}


# --- config ----------------------------------------------------------------------------------

def parse_penalties(spec: str) -> list[tuple[str, float, int]]:
    """loss.penalties -> [(name, weight, every)]: comma-separated name:weight[:every], e.g.
    "wgan_gp:10" or "r1:10:16,r2:1"; "" (or only spaces) means no penalty. weight is a finite
    number > 0, every an integer >= 1 (default 1), each name at most once.

    every = k is the lazy-regularization interval of StyleGAN2 (Karras et al., "Analyzing and
    Improving the Image Quality of StyleGAN", CVPR 2020, sec. 3.1 "Lazy regularization"): the caller
    adds the penalty only on every k-th D update, with weight * k, so that its average weight per
    update is unchanged. (StyleGAN2 runs it as a separate optimizer step and so also scales Adam's
    learning rate and betas by k / (k + 1); added into an existing D update, it adds no optimizer step
    and that scaling does not apply.) The schedule is the caller's: this function only parses."""
    names = ", ".join(sorted(PENALTIES))
    accepted = (f"accepted: comma-separated name:weight[:every] with name one of {names}, weight a finite "
                "number > 0, every an integer >= 1 (e.g. 'r1:10:16,r2:1')")

    def bad(why: str) -> ConfigError:
        return ConfigError(f"loss.penalties={spec!r}: {why}; {accepted}")

    if not spec.strip():
        return []
    out: list[tuple[str, float, int]] = []
    for item in spec.split(","):
        parts = [p.strip() for p in item.split(":")]
        if len(parts) not in (2, 3) or not all(parts):
            raise bad(f"{item.strip()!r} is not name:weight[:every]")
        name = parts[0]
        if name not in PENALTIES:
            raise bad(f"{name!r} is unknown")
        if any(name == seen for seen, _, _ in out):
            raise bad(f"{name!r} is given twice")
        try:
            weight = float(parts[1])
        except ValueError:
            raise bad(f"weight {parts[1]!r} of {name!r} is not a number") from None
        if not (math.isfinite(weight) and weight > 0):
            raise bad(f"weight {parts[1]!r} of {name!r} is not a finite number > 0")
        every = 1
        if len(parts) == 3:
            if not (parts[2].isascii() and parts[2].isdigit()) or int(parts[2]) < 1:
                raise bad(f"every {parts[2]!r} of {name!r} is not an integer >= 1")
            every = int(parts[2])
        out.append((name, weight, every))
    return out


def weighted_sum(specs: list[tuple[str, float, int]], critic: Critic, real: jax.Array, fake: jax.Array,
                 key: jax.Array, example_ids: jax.Array, update_index: jax.Array, *,
                 weights: dict[str, jax.Array] | None = None, axis_name: str | None = None,
                 fake_critic: Critic | None = None, states: dict | None = None,
                 logits: tuple[jax.Array, jax.Array] | None = None) -> tuple[jax.Array, dict, dict]:
    """The penalty term of one D update: sum of weight * penalty over `specs` (parse_penalties), a lazy
    one (every = k > 1) only on updates whose index is a multiple of k, with weight * k. `weights`
    (name -> scalar array) replaces the specs' weights (the step passes them as hyperparameter arrays).
    `fake_critic`: the critic of the penalties in ON_FAKE (a class-conditional D conditioned on the
    generated batch's labels); default `critic`. `states` (name -> state, initial_states) and `logits`
    (D's real and generated logits of this update) are what stateful penalties take. Returns (term,
    {'penalty_NAME': value}, the stateful penalties' new states); a skipped lazy penalty's value is 0
    and its state unchanged. Penalty j draws from fold_in(key, j)."""
    total, metrics, new_states = jnp.zeros((), jnp.float32), {}, {}
    for j, (name, weight, every) in enumerate(specs):
        fn = get_penalty(name)
        k = jax.random.fold_in(key, j)
        judge = fake_critic if name in ON_FAKE and fake_critic is not None else critic
        extra = {"fake_critic": fake_critic or critic} if name in ON_BOTH else {}
        if name in STATEFUL:
            extra.update(state=states[name], logits=logits)

        def value(fn=fn, k=k, judge=judge, extra=extra, stateful=name in STATEFUL):
            out = fn(judge, real, fake, k, example_ids, axis_name=axis_name, **extra)
            v, state = out if stateful else (out, {})
            return v.astype(jnp.float32), state

        def skipped(extra=extra):
            return jnp.zeros((), jnp.float32), extra.get("state", {})

        v, state = value() if every == 1 else lax.cond(update_index % every == 0, value, skipped)
        weight = weight if weights is None else weights[name]
        total = total + weight * every * v
        metrics[f"penalty_{name}"] = v
        if name in STATEFUL:
            new_states[name] = state
    return total, metrics, new_states


def initial_states(specs: list[tuple[str, float, int]]) -> dict:
    """The initial states of the stateful penalties among `specs` (name -> state); {} if none."""
    return {name: STATEFUL[name]() for name, _, _ in specs if name in STATEFUL}


def structure(spec: str) -> list[tuple[str, int]]:
    """The part of loss.penalties compiled into the step: each penalty's name and interval (the
    weights reach the step as arrays, vectorized runs may differ in them)."""
    return [(name, every) for name, _, every in parse_penalties(spec)]


# --- schedules ---------------------------------------------------------------------------------

# loss.penalty_schedule: name -> (progress t in [0, 1], final scale) -> the factor on every penalty's
# weight, 1 at step 0 and the final scale from train.steps on. 'cosine' is R3GAN's gamma schedule
# (Huang et al. 2025: cosine_decay_with_warmup from 0.05 to 0.005 without warmup, in images seen).
PENALTY_SCHEDULES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "constant": lambda t, end: jnp.ones_like(t),
    "linear": lambda t, end: 1.0 + (end - 1.0) * t,
    "cosine": lambda t, end: end + (1.0 - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * t)),
}


def schedule_scale(name: str, step: jax.Array, steps: jax.Array, final_scale: jax.Array) -> jax.Array:
    """The factor on the penalties' weights at train step `step` (int) of a run of `steps` steps: the
    schedule `name` at t = min(step / steps, 1). `steps` and `final_scale` may be arrays (hyperparameters
    of the step), so runs that differ in them share a program."""
    t = jnp.clip(jnp.asarray(step, jnp.float32) / jnp.asarray(steps, jnp.float32), 0.0, 1.0)
    return PENALTY_SCHEDULES[name](t, jnp.asarray(final_scale, jnp.float32))


def scheduled_weights(schedule: str, specs: list[tuple[str, float, int]], hp: dict,
                      step: jax.Array) -> tuple[dict, dict]:
    """The step's hyperparameters `hp` with each penalty's weight (hp['penalty_NAME']) at train step
    `step` under `schedule`, and the factor as a metric ({'penalty_scale': ...}); 'constant' returns hp
    as it is and no metric. A scheduled hp holds 'penalty_schedule_steps' and 'penalty_final_scale'."""
    if schedule == "constant":
        return hp, {}
    scale = schedule_scale(schedule, step, hp["penalty_schedule_steps"], hp["penalty_final_scale"])
    weights = {f"penalty_{name}": hp[f"penalty_{name}"] * scale for name, _, _ in specs}
    return {**hp, **weights}, {"penalty_scale": scale}
