"""Train state, optimizers and the pure update steps: (state, batch) -> (state, metrics).

All randomness of step N comes from fold_in(state.key, N), so what step N draws does not depend on
how the run was split into calls, devices or processes. Noise, dropout and flips are keyed per
example over the global batch. With `axis_name` (pmap) each device runs the same step on its slice
of the global batch and gradients are averaged with `lax.pmean`."""

from collections.abc import Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from gan_jax import keys, losses, penalties
from gan_jax.data.synthetic import sample_mixture
from gan_jax.errors import ConfigError
from gan_jax.ops import random, spectral_norm
from gan_jax.ops.diff_augment import diff_augment, parse_policy

SPECTRAL_NORM = "discriminator_spectral_norm"  # batch_stats entry: D's power-iteration vectors (model.spectral_norm)
EMA = "generator_ema"  # params entry of the generator's moving average (train.ema_decay > 0); not trained


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: generator (or VAE) updates done
    key: jax.Array  # uint32 (2,): the run's base key (raw key data, so it checkpoints as an array)
    params: dict  # network name -> parameters (and EMA -> G's moving average)
    batch_stats: dict  # network name -> BatchNorm statistics ({} where none)
    opt_state: dict  # network name -> optax state


def learning_rate_schedule(peak: float, cfg: ml_collections.ConfigDict) -> optax.Schedule:
    """Per-update learning rate: linear warmup over optimizer.warmup_steps, then constant, linear
    or cosine decay to 0 at train.steps."""
    warmup, total = cfg.optimizer.warmup_steps, cfg.train.steps
    decay_steps = max(total - warmup, 1)
    decay = {"constant": optax.constant_schedule(peak),
             "linear": optax.linear_schedule(peak, 0.0, decay_steps),
             "cosine": optax.cosine_decay_schedule(peak, decay_steps)}[cfg.optimizer.schedule]
    if warmup == 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def make_optimizers(cfg: ml_collections.ConfigDict, names: tuple[str, ...]) -> dict[str, optax.GradientTransformation]:
    """Adam per network; the discriminator may have its own learning rate (TTUR)."""
    out = {}
    for name in names:
        peak = cfg.optimizer.learning_rate
        if name == "discriminator" and cfg.optimizer.discriminator_learning_rate is not None:
            peak = cfg.optimizer.discriminator_learning_rate
        schedule = learning_rate_schedule(peak, cfg)
        out[name] = optax.inject_hyperparams(optax.adam)(learning_rate=schedule, b1=cfg.optimizer.b1,
                                                         b2=cfg.optimizer.b2, eps=cfg.optimizer.eps)
    return out


def to_model_range(images_u8: jnp.ndarray, objective: str) -> jnp.ndarray:
    """uint8 -> float32 in [-1, 1] (GANs: tanh outputs) or [0, 1] (VAEs: Bernoulli means)."""
    x = images_u8.astype(jnp.float32) / 255.0
    return x if objective == "vae" else 2.0 * x - 1.0


def _example_ids(local_batch: int, axis_name: str | None) -> jnp.ndarray:
    ids = jnp.arange(local_batch)
    return ids if axis_name is None else ids + jax.lax.axis_index(axis_name) * local_batch


def _global_normal(key: jax.Array, global_batch: int, dim: int, local_batch: int, axis_name: str | None):
    """Rows of an (global_batch, dim) N(0, I) draw that belong to this device."""
    z = jax.random.normal(key, (global_batch, dim))
    if axis_name is None:
        return z
    return jax.lax.dynamic_slice_in_dim(z, jax.lax.axis_index(axis_name) * local_batch, local_batch)


def _random_flip(key: jax.Array, x: jnp.ndarray, axis_name: str | None) -> jnp.ndarray:
    ids = _example_ids(x.shape[0], axis_name)
    flip = jax.vmap(lambda i: jax.random.bernoulli(jax.random.fold_in(key, i)))(ids)
    return jnp.where(flip[:, None, None, None], x[:, :, ::-1, :], x)


def _pmean(tree, axis_name):
    return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def _apply_updates(state_params, opt_state, grads, optimizer):
    updates, opt_state = optimizer.update(grads, opt_state, state_params)
    return optax.apply_updates(state_params, updates), opt_state


def _all_finite(tree) -> jnp.ndarray:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _gan_metrics(loss_name: str, d_loss, real_logits, fake_logits, g_loss, opt_state) -> dict:
    """The scalars a GAN step logs: losses, mean D(x) and D(G(z)) (probabilities for losses in
    losses.PROBABILISTIC, else the raw outputs as d_real_output/d_fake_output), the learning rates."""
    if loss_name in losses.PROBABILISTIC:
        d = {"d_real": jnp.mean(jax.nn.sigmoid(real_logits)), "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits))}
    else:
        d = {"d_real_output": jnp.mean(real_logits), "d_fake_output": jnp.mean(fake_logits)}
    return {"d_loss": d_loss, **d, "g_loss": g_loss,
            "lr_generator": opt_state["generator"].hyperparams["learning_rate"],
            "lr_discriminator": opt_state["discriminator"].hyperparams["learning_rate"]}


class StepBuilder:
    """Holds what the pure steps close over: the networks, optimizers and static config."""

    def __init__(self, cfg: ml_collections.ConfigDict, nets: dict[str, nn.Module],
                 example_shape: tuple[int, ...], mixture: str | None, binarize: bool,
                 axis_name: str | None = None):
        self.cfg, self.nets, self.example_shape = cfg, nets, example_shape
        self.mixture, self.binarize, self.axis_name = mixture, binarize, axis_name
        self.optimizers = make_optimizers(cfg, tuple(nets))
        self.global_batch = cfg.data.batch_size
        self.ema_decay = 0.0 if "vae" in nets else cfg.train.ema_decay
        self.spectral_norm = "vae" not in nets and cfg.model.spectral_norm
        self.augment_policy = () if "vae" in nets else parse_policy(cfg.data.diff_augment)
        if self.augment_policy and len(example_shape) != 3:
            raise ConfigError(f"data.diff_augment={cfg.data.diff_augment!r} transforms images, and this data has "
                              f"examples of shape {example_shape}; accepted: '' for non-image data")
        # Refuse unknown names now, before a workdir is touched, not at the first trace.
        self.penalties = []
        if "vae" in nets:
            losses.get_likelihood(cfg.loss.likelihood)
        else:
            self.penalties = penalties.parse_penalties(cfg.loss.penalties)
            self._check_packing_and_penalties(cfg)
            losses.get_gan_loss(cfg.loss.name)
            if axis_name is not None and cfg.loss.name in losses.BATCH_COUPLED:
                raise ConfigError(f"loss.name={cfg.loss.name!r} averages over the whole batch inside the loss, and "
                                  "under parallel.mode='pmap' a loss sees one device's share; accepted: "
                                  "parallel.mode='jit'")

    def _check_packing_and_penalties(self, cfg: ml_collections.ConfigDict) -> None:
        pack = cfg.model.get("pack", 1)
        local_batch = self.global_batch // jax.device_count()
        if pack > 1 and local_batch % pack:
            raise ConfigError(f"model.pack={pack} does not divide the per-device batch ({local_batch} = "
                              f"data.batch_size {self.global_batch} / {jax.device_count()} devices); accepted: "
                              "a divisor of it")
        if not self.penalties:
            return
        field = f"loss.penalties={cfg.loss.penalties!r}"
        if pack > 1:
            raise ConfigError(f"{field} with model.pack={pack}: a penalty's gradient norm is per sample, D's input "
                              "a group of samples; accepted: model.pack=1 with penalties")
        if cfg.train.update_rule == "simultaneous":
            raise ConfigError(f"{field} needs D as a function of its input, which the simultaneous rule's "
                              "logit-space step does not keep; accepted: train.update_rule='alternating'")
        x = jax.ShapeDtypeStruct((2, *self.example_shape), jnp.float32)
        variables = jax.eval_shape(lambda x: self.nets["discriminator"].init(jax.random.PRNGKey(0), x, train=False), x)
        if variables.get("batch_stats"):
            raise ConfigError(f"{field} needs a discriminator whose examples are independent, and model.name="
                              f"{cfg.model.name!r} has BatchNorm in D; accepted: a model without it (dcgan_tutorial, "
                              "mlp_gan without discriminator batch norm)")

    # --- initialization ----------------------------------------------------------------------
    def init_state(self, seed: int) -> TrainState:
        """Parameters, BatchNorm statistics and optimizer states for the run `seed`."""
        key = jax.random.PRNGKey(seed)
        init_key = jax.random.fold_in(key, keys.INIT)  # disjoint from every step key fold_in(key, N)
        params, stats = {}, {}
        x = jnp.zeros((2, *self.example_shape), jnp.float32)
        rngs = lambda i: {"params": jax.random.fold_in(init_key, i), "dropout": init_key, "latent": init_key}
        if "vae" in self.nets:
            variables = self.nets["vae"].init(rngs(0), x, train=False)
            params["vae"], stats["vae"] = variables["params"], variables.get("batch_stats", {})
        else:
            z = jnp.zeros((2, self.cfg.model.latent_dim), jnp.float32)
            for i, (name, arg) in enumerate((("generator", z), ("discriminator", x))):
                variables = self.nets[name].init(rngs(i), arg, train=False)
                params[name], stats[name] = variables["params"], variables.get("batch_stats", {})
        opt_state = {name: self.optimizers[name].init(p) for name, p in params.items()}
        if self.ema_decay:
            params[EMA] = params["generator"]
        if self.spectral_norm:
            stats[SPECTRAL_NORM] = spectral_norm.init_vectors(params["discriminator"], jax.random.fold_in(init_key, 3))
        return TrainState(jnp.zeros((), jnp.int32), key, params, stats, opt_state)

    # --- one update --------------------------------------------------------------------------
    def real_examples(self, key: jax.Array, batch_u8: jnp.ndarray | None) -> jnp.ndarray:
        """The model-range real batch (local_batch, *example_shape) of one update."""
        local_batch = self.global_batch if batch_u8 is None else batch_u8.shape[0]
        if self.mixture is not None:
            if self.axis_name is not None:
                local_batch = self.global_batch // jax.lax.psum(1, self.axis_name)
            points = sample_mixture(self.mixture, key, self.global_batch)
            if self.axis_name is None:
                return points
            return jax.lax.dynamic_slice_in_dim(points, jax.lax.axis_index(self.axis_name) * local_batch,
                                                local_batch)
        x = to_model_range(batch_u8, self.cfg.objective)
        if self.cfg.data.random_flip:
            x = _random_flip(jax.random.fold_in(key, 1), x, self.axis_name)
        if self.binarize:
            ids = _example_ids(x.shape[0], self.axis_name)
            # bernoulli(p) is uniform < p; vmapping only over the ids keeps x's sharding out of the vmap.
            u = jax.vmap(lambda i: random.uniform(jax.random.fold_in(key, i), x.shape[1:]))(ids)
            x = (u < x).astype(jnp.float32)
        return x

    def train_step(self, state: TrainState, batch_u8: jnp.ndarray | None) -> tuple[TrainState, dict]:
        """One generator (or VAE) update. batch_u8: (n_critic, local_batch, H, W, C) uint8, or None
        for synthetic data. Returns the new state and scalar metrics."""
        step_key = jax.random.fold_in(state.key, state.step)
        if "vae" in self.nets:
            state, metrics = self._vae_step(state, batch_u8, step_key)
        else:
            state, metrics = self._gan_step(state, batch_u8, step_key)
            if self.ema_decay:
                state = state.replace(params=self._update_ema(state.params, state.step + 1))
        finite = _all_finite(state.params) & _all_finite({k: v for k, v in metrics.items()})
        return state.replace(step=state.step + 1), {**metrics, "finite": finite}

    def _gan_step(self, state: TrainState, batch_u8, step_key):
        G, D = self.nets["generator"], self.nets["discriminator"]
        loss_fn = losses.get_gan_loss(self.cfg.loss.name)
        params, stats, opt_state = dict(state.params), dict(state.batch_stats), dict(state.opt_state)
        n_critic = self.cfg.train.n_critic
        local_batch = batch_u8.shape[1] if batch_u8 is not None else self.global_batch
        if self.mixture is not None and self.axis_name is not None:
            local_batch = self.global_batch // jax.lax.psum(1, self.axis_name)

        def generate(p_g, key):
            z = _global_normal(key, self.global_batch, self.cfg.model.latent_dim, local_batch, self.axis_name)
            fake, new = G.apply({"params": p_g, "batch_stats": stats["generator"]}, z, train=True,
                                mutable=["batch_stats"])
            return fake, new.get("batch_stats", {})

        # Spectral normalization: D's kernels divided by their estimated norms in every forward; the
        # estimates' vectors advance one power iteration per D update.
        sn = {"u": stats.pop(SPECTRAL_NORM, None)}

        def advance_spectral_norm():
            if sn["u"] is not None:
                sn["u"] = spectral_norm.power_iteration(params["discriminator"], sn["u"])

        def discriminate(p_d, d_stats, x, key):
            if sn["u"] is not None:
                p_d = spectral_norm.normalize(p_d, sn["u"])
            if self.augment_policy:  # DiffAugment: every D forward, real and generated alike
                x = diff_augment(x, jax.random.fold_in(key, 1), _example_ids(x.shape[0], self.axis_name),
                                 self.augment_policy)
            logits, new = D.apply({"params": p_d, "batch_stats": d_stats}, x, train=True,
                                  rngs={"dropout": key}, mutable=["batch_stats"])
            return logits, new.get("batch_stats", d_stats)

        with_sn = (lambda st: st.replace(batch_stats={**st.batch_stats, SPECTRAL_NORM: sn["u"]})) \
            if sn["u"] is not None else (lambda st: st)
        if self.cfg.train.update_rule == "simultaneous":
            advance_spectral_norm()
            state, metrics = self._simultaneous_gan_step(state.replace(batch_stats=stats), batch_u8, step_key,
                                                         generate, discriminate, loss_fn)
            return with_sn(state), metrics

        for i in range(n_critic):
            advance_spectral_norm()
            key = jax.random.fold_in(step_key, 10 + i)
            real = self.real_examples(jax.random.fold_in(key, 0),
                                      None if batch_u8 is None else batch_u8[i])
            if i == n_critic - 1:
                # The last critic update's fake batch is reused for the generator update (one G
                # forward per step, as in the PyTorch DCGAN): keep its VJP.
                fake, g_vjp, g_stats = jax.vjp(lambda p, k=key: generate(p, jax.random.fold_in(k, 1)),
                                               params["generator"], has_aux=True)
            else:
                fake, g_stats = generate(params["generator"], jax.random.fold_in(key, 1))
            stats["generator"] = g_stats

            def d_loss(p_d, real, fake, key, update_index):
                real_logits, s = discriminate(p_d, stats["discriminator"], real, jax.random.fold_in(key, 2))
                fake_logits, s = discriminate(p_d, s, fake, jax.random.fold_in(key, 3))
                loss, _ = loss_fn(real_logits, fake_logits)
                # The critic of the penalties: D's logits with these parameters, its dropout keyed apart.
                critic = lambda x: discriminate(p_d, stats["discriminator"], x, jax.random.fold_in(key, 4))[0]
                term, penalty_metrics = penalties.weighted_sum(
                    self.penalties, critic, real, fake, jax.random.fold_in(key, 5),
                    _example_ids(real.shape[0], self.axis_name), update_index, axis_name=self.axis_name)
                return loss + term, (s, real_logits, fake_logits, loss, penalty_metrics)

            (_, (s, real_logits, fake_logits, loss, penalty_metrics)), grads = jax.value_and_grad(
                d_loss, has_aux=True)(params["discriminator"], real, jax.lax.stop_gradient(fake), key,
                                      state.step * n_critic + i)
            grads = _pmean(grads, self.axis_name)
            stats["discriminator"] = _pmean(s, self.axis_name)
            params["discriminator"], opt_state["discriminator"] = _apply_updates(
                params["discriminator"], opt_state["discriminator"], grads, self.optimizers["discriminator"])
            params["discriminator"] = self._constrain_critic(params["discriminator"])
            critic_loss, critic_logits = loss, (real_logits, fake_logits)  # the last update's, logged

        g_key = jax.random.fold_in(step_key, 1)

        def g_loss(fake_images):
            # D's BatchNorm statistics from this forward are not kept: only D's own update moves them.
            real_logits, _ = discriminate(params["discriminator"], stats["discriminator"], real,
                                          jax.random.fold_in(g_key, 2))  # dead code unless the loss reads it
            fake_logits, _ = discriminate(params["discriminator"], stats["discriminator"], fake_images,
                                          jax.random.fold_in(g_key, 3))
            return loss_fn(real_logits, fake_logits)[1]

        loss, fake_grad = jax.value_and_grad(g_loss)(fake)
        (grads,) = g_vjp(fake_grad)
        grads = _pmean(grads, self.axis_name)
        stats["generator"] = _pmean(stats["generator"], self.axis_name)
        params["generator"], opt_state["generator"] = _apply_updates(
            params["generator"], opt_state["generator"], grads, self.optimizers["generator"])
        metrics = {**_gan_metrics(self.cfg.loss.name, critic_loss, *critic_logits, loss, opt_state),
                   **penalty_metrics}
        metrics = _pmean(metrics, self.axis_name)
        return with_sn(state.replace(params=params, batch_stats=stats, opt_state=opt_state)), metrics

    def _simultaneous_gan_step(self, state: TrainState, batch_u8, step_key, generate, discriminate, loss_fn):
        """Both networks step from the same parameters, their gradients taken from one generator and
        one discriminator forward (the TensorFlow DCGAN tutorial's step): 2 discriminator forwards
        per step instead of the alternating update's 3. n_critic is 1 (checked by the config)."""
        params, stats, opt_state = dict(state.params), dict(state.batch_stats), dict(state.opt_state)
        key = jax.random.fold_in(step_key, 10)  # the keys of the alternating update's (only) critic update
        real = self.real_examples(jax.random.fold_in(key, 0), None if batch_u8 is None else batch_u8[0])
        fake, g_vjp, stats["generator"] = jax.vjp(lambda p: generate(p, jax.random.fold_in(key, 1)),
                                                  params["generator"], has_aux=True)

        def discriminate_both(p_d, fake_images):
            real_logits, s = discriminate(p_d, stats["discriminator"], real, jax.random.fold_in(key, 2))
            fake_logits, s = discriminate(p_d, s, fake_images, jax.random.fold_in(key, 3))
            return (real_logits, fake_logits), s

        logits, d_vjp, d_stats = jax.vjp(discriminate_both, params["discriminator"], fake, has_aux=True)
        # Each loss's gradient with respect to the logits, pulled back through the one D forward: D's
        # parameters get d_loss's, the fake images g_loss's (XLA drops the other half of each pullback).
        (d_loss, d_logit_grads), (g_loss, g_logit_grads) = [
            jax.value_and_grad(lambda lg, i=i: loss_fn(*lg)[i])(logits) for i in (0, 1)]
        d_grads, _ = d_vjp(d_logit_grads)
        _, fake_grad = d_vjp(g_logit_grads)
        (g_grads,) = g_vjp(fake_grad)
        for name, grads in (("discriminator", d_grads), ("generator", g_grads)):
            params[name], opt_state[name] = _apply_updates(params[name], opt_state[name],
                                                           _pmean(grads, self.axis_name), self.optimizers[name])
        params["discriminator"] = self._constrain_critic(params["discriminator"])
        stats = {name: _pmean(s, self.axis_name) for name, s in (("generator", stats["generator"]),
                                                                 ("discriminator", d_stats))}
        metrics = _gan_metrics(self.cfg.loss.name, d_loss, *logits, g_loss, opt_state)
        return state.replace(params=params, batch_stats=stats, opt_state=opt_state), _pmean(metrics, self.axis_name)

    def _update_ema(self, params: dict, updates_done: jnp.ndarray) -> dict:
        """The generator's exponential moving average after `updates_done` updates: a copy of G until
        train.ema_start, then ema <- decay * ema + (1 - decay) * G."""
        d = self.ema_decay
        averaging = updates_done > self.cfg.train.ema_start
        ema = jax.tree.map(lambda e, g: jnp.where(averaging, d * e + (1 - d) * g, g), params[EMA], params["generator"])
        return {**params, EMA: ema}

    def _constrain_critic(self, d_params):
        """WGAN weight clipping (Arjovsky et al. 2017), after each D update: every D parameter into
        [-loss.clip, loss.clip]; loss.clip = 0 leaves D unconstrained."""
        c = self.cfg.loss.clip
        return d_params if not c else jax.tree.map(lambda p: jnp.clip(p, -c, c), d_params)

    def _vae_step(self, state: TrainState, batch_u8, step_key):
        V = self.nets["vae"]
        x = self.real_examples(jax.random.fold_in(step_key, 0), batch_u8[0])
        eps = _global_normal(jax.random.fold_in(step_key, 1), self.global_batch, self.cfg.model.latent_dim,
                             x.shape[0], self.axis_name)

        def loss_fn(p):
            decoded, mean, logvar = V.apply({"params": p}, x, train=True, eps=eps)
            return losses.negative_elbo(x, decoded, mean, logvar, self.cfg.loss.likelihood, self.cfg.loss.beta,
                                        self.cfg.loss.gaussian_std)

        (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params["vae"])
        grads = _pmean(grads, self.axis_name)
        new_params, new_opt = _apply_updates(state.params["vae"], state.opt_state["vae"], grads,
                                             self.optimizers["vae"])
        metrics = _pmean({"loss": loss, **parts, "lr": new_opt.hyperparams["learning_rate"]}, self.axis_name)
        return state.replace(params={"vae": new_params}, opt_state={"vae": new_opt}), metrics

    def multi_step(self, state: TrainState, batches_u8: jnp.ndarray | None,
                   length: int | None = None) -> tuple[TrainState, dict]:
        """K = `length` (default `train.steps_per_call`) updates in one dispatch: batches_u8
        (K, n_critic, local_batch, ...) or None. Metrics come back stacked (K,)."""
        k = self.cfg.train.steps_per_call if length is None else length
        if k == 1:
            state, metrics = self.train_step(state, None if batches_u8 is None else batches_u8[0])
            return state, jax.tree.map(lambda m: m[None], metrics)
        return jax.lax.scan(self.train_step, state, batches_u8, length=k)

    # --- sampling ----------------------------------------------------------------------------
    def sample_fn(self) -> Callable[[TrainState, jnp.ndarray], jnp.ndarray]:
        """(state, z (N, latent_dim)) -> samples in model range, networks in inference mode."""
        if "vae" in self.nets:
            V = self.nets["vae"]
            return lambda state, z: jax.nn.sigmoid(V.apply({"params": state.params["vae"]}, z, method=V.decode)) \
                if self.cfg.loss.likelihood == "bernoulli" else \
                jnp.clip(V.apply({"params": state.params["vae"]}, z, method=V.decode), 0, 1)
        G = self.nets["generator"]
        # With train.ema_decay the samples come from the averaged parameters (BatchNorm: G's statistics).
        name = EMA if self.ema_decay else "generator"
        return lambda state, z: G.apply({"params": state.params[name],
                                         "batch_stats": state.batch_stats["generator"]}, z, train=False)
