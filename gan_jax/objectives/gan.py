"""The GAN objective, whatever the models (mlp_gan, dcgan_tutorial, dcgan, ...): a generator G and a
discriminator D trained on an adversarial loss (losses.py) plus weighted penalties on D (penalties.py).

One discriminator objective and one generator objective serve both update rules (gan_updates.py):
`alternating` (n_critic D updates, then G against the updated D) and `simultaneous` (both from the same
parameters).
Each objective returns (loss, metrics): the metrics name the parts of the loss (d_loss and penalty_NAME,
g_loss, and whatever a subclass adds), each the value that was differentiated. Without penalties, and
with neither objective overridden, the simultaneous rule takes a fast path in logit space that is the
same computation: one D forward on the real and one on the generated batch give both networks'
gradients. D's forward (spectral normalization, DiffAugment, BatchNorm state) is written once, in
`discriminate`.

Class-conditional models (model.num_classes > 0): the batch is (images, labels), G and D take the
labels (BatchLabels: the real batch's, and the generated batch's, drawn uniformly over the classes
every update), the penalties judge D conditioned on the labels of the batch their inputs come from.
A D with a class head (conditioning.AuxiliaryClassifier, model.discriminator_conditioning='auxiliary')
trains it as AC-GAN does (Odena et al. 2017): D's loss adds class_weight_real * CE(real) +
class_weight_fake * CE(generated), G's class_weight_generator * CE(generated), the cross-entropies (nats)
of its class logits against the labels, logged as d_class_real, d_class_fake and g_class."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import traverse_util

from gan_jax import keys, losses, penalties
from gan_jax.errors import ConfigError
from gan_jax.models.conditioning import CLASS_LOGITS
from gan_jax.models.dcgan import FEATURES
from gan_jax.objectives import gan_updates, register
from gan_jax.objectives.base import (
    Hyperparameters,
    Steps,
    TrainState,
    example_ids,
    global_normal,
    learning_rate,
    pmean,
)
from gan_jax.objectives.labels import NO_LABELS, BatchLabels, LabelledUpdates, class_logits_of
from gan_jax.ops import ada, spectral_norm
from gan_jax.ops.diff_augment import diff_augment, parse_policy

SPECTRAL_NORM = "discriminator_spectral_norm"  # batch_stats entry: D's power-iteration vectors (model.spectral_norm)
# Entries of D's batch_stats that are training state beside its BatchNorm statistics: ADA's probability
# (ops/ada.py) and the stateful penalties' states (LeCam's anchors). They travel with D's statistics
# through every forward and objective (so an objective's signature need not know them); `discriminate`
# takes them out before Flax sees the statistics and puts them back. Flax names submodules in CamelCase.
D_STATE_ENTRIES = (ada.STATE, penalties.STATE)
EMA = "generator_ema"  # params (and batch_stats) entry of G's moving average (train.ema_decay > 0); not trained

fold = jax.random.fold_in


@register("gan", nets=("generator", "discriminator"))
class GanSteps(LabelledUpdates, Steps):
    """Steps of a GAN: batch (n_critic, local_batch, H, W, C) uint8 per update, or None for 2D mixtures."""

    # Penalty weights are arrays, the penalties' names and intervals compiled in; ema_decay exists
    # only with train.ema_decay > 0 (0 keeps no average: another train state, never stacked with it),
    # the class weights only for a D with a class head.
    # A penalty schedule reads the run's length and final scale as arrays too (train.steps differs per run).
    accumulates_gradients = True
    HYPERPARAMETERS = {"penalty_NAME": ("loss.penalties", penalties.structure), "ema_decay": "train.ema_decay",
                       "penalty_final_scale": "loss.penalty_final_scale", "penalty_schedule_steps": "train.steps",
                       "class_weight_real": "loss.class_weight_real", "class_weight_fake": "loss.class_weight_fake",
                       "class_weight_generator": "loss.class_weight_generator",
                       "zcr_discriminator": ("loss.zcr_discriminator", lambda v: v > 0),
                       "zcr_generator": ("loss.zcr_generator", lambda v: v > 0), "zcr_sigma": "loss.zcr_sigma"}

    def __init__(self, cfg: ml_collections.ConfigDict, nets: dict, example_shape: tuple[int, ...],
                 mixture: str | None = None, binarize: bool = False, axis_name: str | None = None):
        super().__init__(cfg, nets, example_shape, mixture, binarize, axis_name)
        self.ema = cfg.train.ema_decay > 0
        self.spectral_norm = cfg.model.spectral_norm
        self.augment_policy = parse_policy(cfg.data.diff_augment)
        if self.augment_policy and len(example_shape) != 3:
            raise ConfigError(f"data.diff_augment={cfg.data.diff_augment!r} transforms images, and this data has "
                              f"examples of shape {example_shape}; accepted: '' for non-image data")
        self.ada = cfg.data.ada_target > 0
        self.zcr = cfg.loss.zcr_discriminator > 0 or cfg.loss.zcr_generator > 0  # latent consistency (gan_updates)
        if self.ada and (len(example_shape) != 3 or self.augment_policy):
            raise ConfigError(f"data.ada_target={cfg.data.ada_target!r} augments images, and this run has examples of "
                              f"shape {example_shape} and data.diff_augment={cfg.data.diff_augment!r}; accepted: "
                              "image data without DiffAugment (one augmentation of D's inputs)")
        # Refuse unknown names now, before a workdir is touched, not at the first trace.
        self.loss_fn = losses.get_gan_loss(cfg.loss.name)
        self.penalties = penalties.parse_penalties(cfg.loss.penalties)
        self.num_classes = cfg.model.num_classes  # > 0: batches are (images, labels) (Experiment loads them)
        # AC-GAN's class loss, where D has a class head (it sows CLASS_LOGITS).
        sown = traverse_util.flatten_dict(self._d_variables().get("intermediates", {})) if self.num_classes else {}
        self.class_head = any(path[-1] == CLASS_LOGITS for path in sown)
        # The simultaneous rule's shortcut, only where it is the same computation as the objectives
        # (a subclass's objective, a penalty or a class loss would be skipped by it); tests turn it off.
        overridden = (type(self).generator_objective is not GanSteps.generator_objective
                      or type(self).discriminator_objective is not GanSteps.discriminator_objective)
        self.logit_fast_path = (not self.penalties and not overridden and not self.class_head and not cfg.train.top_k
                                and not self.zcr)
        losses.check_top_k(cfg.train, cfg.loss.name, axis_name)
        self._check_batch_and_penalties(cfg)
        if axis_name is not None and cfg.loss.name in losses.BATCH_COUPLED:
            raise ConfigError(f"loss.name={cfg.loss.name!r} averages over the whole batch inside the loss, and "
                              "under parallel.mode='pmap' a loss sees one device's share; accepted: "
                              "parallel.mode='jit'")

    def _check_batch_and_penalties(self, cfg: ml_collections.ConfigDict) -> None:
        """Refuses what a split batch cannot serve (packing groups, batch-coupled losses under accumulation)
        and penalties on inputs they cannot judge."""
        pack, k = cfg.model.pack, cfg.train.grad_accumulation
        local_batch = self.global_batch // jax.device_count() // k
        if pack > 1 and local_batch % pack:
            raise ConfigError(f"model.pack={pack} does not divide the per-device batch ({local_batch} = "
                              f"data.batch_size {self.global_batch} / {jax.device_count()} devices / "
                              f"train.grad_accumulation {k}); accepted: a divisor of it")
        coupled = "train.top_k" if cfg.train.top_k else f"loss.name={cfg.loss.name!r}"
        if k > 1 and (cfg.train.top_k or cfg.loss.name in losses.BATCH_COUPLED):
            raise ConfigError(f"train.grad_accumulation={k} with {coupled}: its loss couples the examples of the "
                              "whole batch, and a micro-batch sees a part; accepted: train.grad_accumulation=1")
        if not self.penalties:
            return
        field = f"loss.penalties={cfg.loss.penalties!r}"
        on_images = [name for name, _, _ in self.penalties if name in penalties.IMAGES_ONLY]
        if on_images and len(self.example_shape) != 3:
            others = sorted(set(penalties.PENALTIES) - penalties.IMAGES_ONLY)
            raise ConfigError(f"{field}: {', '.join(on_images)} transform images, and this data has examples of "
                              f"shape {self.example_shape}; accepted: {', '.join(others)}")
        if pack > 1:
            raise ConfigError(f"{field} with model.pack={pack}: a penalty's gradient norm is per sample, D's input "
                              "a group of samples; accepted: model.pack=1 with penalties")
        if self._d_variables().get("batch_stats"):
            raise ConfigError(f"{field} needs a discriminator whose examples are independent, and model.name="
                              f"{cfg.model.name!r} has BatchNorm in D; accepted: a model without it (dcgan_tutorial, "
                              "mlp_gan without discriminator batch norm)")

    def _d_variables(self) -> dict:
        """The shapes of D's variables, the sown 'intermediates' included."""
        x = jax.ShapeDtypeStruct((2, *self.example_shape), jnp.float32)
        return jax.eval_shape(lambda x: self.nets["discriminator"].init(
            jax.random.PRNGKey(0), x, labels=self.init_labels(2), train=False, mutable=True), x)

    def hyperparameters(self) -> Hyperparameters:
        hp = super().hyperparameters()
        hp.update({f"penalty_{name}": np.float32(weight) for name, weight, _ in self.penalties})
        if self.cfg.loss.penalty_schedule != "constant":
            hp.update(penalty_final_scale=np.float32(self.cfg.loss.penalty_final_scale),
                      penalty_schedule_steps=np.float32(self.cfg.train.steps))
        if self.ema:
            hp["ema_decay"] = np.float32(self.cfg.train.ema_decay)
        if self.class_head:
            hp.update({name: np.float32(self.cfg.loss[name]) for name in
                       ("class_weight_real", "class_weight_fake", "class_weight_generator")})
        if self.zcr:
            hp.update({name: np.float32(self.cfg.loss[name]) for name in
                       ("zcr_discriminator", "zcr_generator", "zcr_sigma")})
        return hp

    # --- initialization ----------------------------------------------------------------------
    def init_state(self, seed: int) -> TrainState:
        """Parameters, BatchNorm statistics and optimizer states for the run `seed`."""
        key = jax.random.PRNGKey(seed)
        init_key = fold(key, keys.INIT)  # disjoint from every step key fold_in(key, N)
        params, stats = {}, {}
        z = jnp.zeros((2, self.cfg.model.latent_dim), jnp.float32)
        x = jnp.zeros((2, *self.example_shape), jnp.float32)
        for i, (name, arg) in enumerate((("generator", z), ("discriminator", x))):
            rngs = {"params": fold(init_key, i), "dropout": init_key}
            variables = self.nets[name].init(rngs, arg, labels=self.init_labels(2), train=False)
            params[name], stats[name] = variables["params"], variables.get("batch_stats", {})
        opt_state = {name: self.optimizers[name].init(p) for name, p in params.items()}
        if self.ema:
            params[EMA], stats[EMA] = params["generator"], stats["generator"]
        if self.spectral_norm:
            stats[SPECTRAL_NORM] = spectral_norm.init_vectors(params["discriminator"], fold(init_key, 3))
        entries = {ada.STATE: ada.initial_state()} if self.ada else {}
        if states := penalties.initial_states(self.penalties):
            entries[penalties.STATE] = states
        stats["discriminator"] = {**stats["discriminator"], **entries}
        return TrainState(jnp.zeros((), jnp.int32), key, params, stats, opt_state)

    # --- the two networks' forwards ----------------------------------------------------------
    def decode(self, p_g, g_stats, z: jax.Array, labels: jax.Array | None = None):
        """G on latents z (N, latent_dim) (and labels (N,)) in training mode: (images (N, ...), G's new stats)."""
        fake, new = self.nets["generator"].apply({"params": p_g, "batch_stats": g_stats}, z, labels=labels,
                                                 train=True, mutable=["batch_stats"])
        return fake, new.get("batch_stats", {})

    def latents(self, key: jax.Array, local_batch: int) -> jax.Array:
        """This device's rows (local_batch, latent_dim) of the global latent draw from `key`."""
        return global_normal(key, self.global_batch, self.cfg.model.latent_dim, local_batch, self.axis_name)

    def perturbed_latents(self, z: jax.Array, key: jax.Array, local_batch: int, hp: Hyperparameters):
        """zCR's T(z) = z + sigma eps, eps this device's rows of a global N(0, I) draw from `key`; None
        with zCR off."""
        return None if not self.zcr else z + hp["zcr_sigma"] * self.latents(key, local_batch)

    def generate(self, p_g, g_stats, key: jax.Array, local_batch: int, labels: jax.Array | None = None):
        """G on this device's rows of the global latent draw (and `labels`, this device's):
        (fake (local_batch, ...), G's new stats)."""
        return self.decode(p_g, g_stats, self.latents(key, local_batch), labels)

    def discriminate(self, p_d, d_stats, sn_vectors, x, key: jax.Array, features: bool = False,
                     labels: jax.Array | None = None, class_logits: bool = False):
        """D's logits on x (and labels (N,)) in training mode: spectrally normalized kernels (if on),
        DiffAugment (if on), dropout keyed by `key`. Returns (logits, D's new BatchNorm statistics), then
        with `features` the last hidden layer that D sows (models/dcgan.py FEATURES), with `class_logits`
        its class head's logits (N, num_classes)."""
        if sn_vectors is not None:
            p_d = spectral_norm.normalize(p_d, sn_vectors)
        if self.augment_policy:  # every D forward, real and generated alike
            x = diff_augment(x, fold(key, keys.AUGMENT), example_ids(x.shape[0], self.axis_name), self.augment_policy)
        d_stats, entries = split_d_state(d_stats)
        if ada.STATE in entries:  # likewise, with the probability in the train state
            x = ada.augment(x, fold(key, keys.ADA), example_ids(x.shape[0], self.axis_name), entries[ada.STATE]["p"],
                            self.cfg.data.ada_pipeline)
        mutable = ["batch_stats", "intermediates"] if features or class_logits else ["batch_stats"]
        logits, new = self.nets["discriminator"].apply({"params": p_d, "batch_stats": d_stats}, x, labels=labels,
                                                       train=True, rngs={"dropout": key}, mutable=mutable)
        out = (logits, {**new.get("batch_stats", d_stats), **entries})
        if features:
            out = (*out, new["intermediates"][FEATURES][0])
        return (*out, class_logits_of(new["intermediates"])) if class_logits else out

    def class_loss(self, p_d, d_stats, sn_vectors, x, key: jax.Array, labels: jax.Array | None):
        """D's logits on x, D's new stats and the cross-entropy (nats, batch mean) of its class logits
        against `labels` (0 without a class head)."""
        out = self.discriminate(p_d, d_stats, sn_vectors, x, key, labels=labels, class_logits=self.class_head)
        if not self.class_head:
            return (*out, jnp.zeros((), jnp.float32))
        logits, s, class_logits = out
        return logits, s, optax.softmax_cross_entropy_with_integer_labels(class_logits, labels).mean()

    # --- the two objectives ------------------------------------------------------------------
    def discriminator_objective(self, p_d, d_stats, sn_vectors, real, fake, key, update_index, hp,
                                labels: BatchLabels = NO_LABELS, perturbed: jax.Array | None = None):
        """Adversarial D loss + weighted penalties (+ AC-GAN's class losses, + zCR's term), as a function of
        D's parameters. Returns (total, (metrics, D's new stats: the stateful penalties' states moved too)):
        metrics d_loss (the adversarial part), penalty_NAME (unweighted), d_class_real and d_class_fake
        (with a class head), d_zcr (with zCR: mean (D(G(z)) - D(G(T(z))))^2 over the batch, `perturbed`
        being G(T(z)); StudioGAN's MSE) and D's mean outputs (output_metrics)."""
        real_logits, s, class_real = self.class_loss(p_d, d_stats, sn_vectors, real, fold(key, keys.D_REAL),
                                                     labels.real)
        fake_logits, s, class_fake = self.class_loss(p_d, s, sn_vectors, fake, fold(key, keys.D_FAKE), labels.fake)
        loss, _ = self.loss_fn(real_logits, fake_logits)
        # The penalties' critic: D's logits with these parameters, its dropout keyed apart; conditioned
        # on the real batch's labels, or on the generated batch's for a penalty on that batch.
        critic, fake_critic = (lambda x, y=y: self.discriminate(p_d, d_stats, sn_vectors, x, fold(key, keys.D_PENALTY),
                                                                labels=y)[0] for y in labels)
        weights = {name: hp[f"penalty_{name}"] for name, _, _ in self.penalties}
        term, penalty_metrics, penalty_states = penalties.weighted_sum(
            self.penalties, critic, real, fake, fold(key, keys.PENALTIES), example_ids(real.shape[0], self.axis_name),
            update_index, weights=weights, axis_name=self.axis_name, fake_critic=fake_critic,
            states=s.get(penalties.STATE), logits=(real_logits, fake_logits))
        if penalty_states:
            s = {**s, penalties.STATE: penalty_states}
        metrics = {"d_loss": loss, **self.output_metrics(real_logits, fake_logits), **penalty_metrics}
        if self.class_head:
            metrics.update(d_class_real=class_real, d_class_fake=class_fake)
            term = term + hp["class_weight_real"] * class_real + hp["class_weight_fake"] * class_fake
        if perturbed is not None:  # the same D forward (dropout, augmentation) on G(T(z)) as on G(z)
            perturbed_logits = self.discriminate(p_d, s, sn_vectors, perturbed, fold(key, keys.D_FAKE),
                                                 labels=labels.fake)[0]
            metrics["d_zcr"] = jnp.mean(jnp.square(fake_logits - perturbed_logits))
            term = term + hp["zcr_discriminator"] * metrics["d_zcr"]
        return loss + term, (metrics, s)

    def generator_objective(self, fake, p_d, d_stats, sn_vectors, real, key, labels: BatchLabels = NO_LABELS,
                            hp: Hyperparameters | None = None, perturbed: jax.Array | None = None):
        """The adversarial G loss (+ AC-GAN's class loss, - zCR's term) as a function of the generated batch
        (and of `perturbed`, G(T(z)), with zCR): (loss, {'g_loss': the adversarial part, 'g_class': the class
        loss (with a class head), 'g_zcr': mean (G(z) - G(T(z)))^2 over every value (with zCR; G is pushed to
        keep it large)}). D's statistics from these forwards are not kept: only D's own update moves them."""
        real_logits, _ = self.discriminate(p_d, d_stats, sn_vectors, real, fold(key, keys.D_REAL),  # dead unless read
                                           labels=labels.real)
        fake_logits, _, class_fake = self.class_loss(p_d, d_stats, sn_vectors, fake, fold(key, keys.D_FAKE),
                                                     labels.fake)
        g_loss = (losses.top_k_generator_loss(self.loss_fn, real_logits, fake_logits, hp["top_k_fraction"])
                  if self.cfg.train.top_k else self.loss_fn(real_logits, fake_logits)[1])
        total, metrics = g_loss, {"g_loss": g_loss}
        if self.class_head:
            metrics["g_class"] = class_fake
            total = total + hp["class_weight_generator"] * class_fake
        if perturbed is not None:
            metrics["g_zcr"] = jnp.mean(jnp.square(fake - perturbed))
            total = total - hp["zcr_generator"] * metrics["g_zcr"]
        return total, metrics

    def after_update(self, d_stats: dict, d_metrics: dict) -> dict:
        """D's statistics after a D update: BatchNorm's averaged over devices, ADA's sums advanced by the
        global mean sign(D(real)) (the other entries are the global batch's already)."""
        d_stats, entries = split_d_state(d_stats)
        if self.ada:
            entries[ada.STATE] = ada.accumulated(entries[ada.STATE], pmean(d_metrics["d_real_sign"], self.axis_name))
        return {**pmean(d_stats, self.axis_name), **entries}

    # --- one update --------------------------------------------------------------------------
    def update_step(self, params, stats, opt_state, batch, step_key, state, hp) -> dict:
        """One generator update (after n_critic D updates, or with one, simultaneously). batch:
        (n_critic, local_batch, H, W, C) uint8, or None for synthetic data; for a conditional model
        (those images, their labels (n_critic, local_batch) int32)."""
        sn_vectors = stats.pop(SPECTRAL_NORM, None)
        # The step's own values of the scheduled hyperparameters (penalty weights, top-k's fraction), logged.
        hp, scheduled = penalties.scheduled_weights(self.cfg.loss.penalty_schedule, self.penalties, hp, state.step)
        hp, scheduled = losses.with_top_k_fraction(self.cfg.train, hp, scheduled, state.step)
        rule = gan_updates.UPDATE_RULES[self.cfg.train.update_rule]
        sn_vectors, metrics = rule(self, params, stats, opt_state, sn_vectors, batch, step_key, state.step, hp,
                                   state.key)
        if sn_vectors is not None:
            stats[SPECTRAL_NORM] = sn_vectors
        if self.ada:
            data, d = self.cfg.data, stats["discriminator"]
            adjusted = ada.adjusted(d[ada.STATE], state.step, data.ada_interval, self.global_batch, data.ada_target,
                                    data.ada_kimg)
            stats["discriminator"] = {**d, ada.STATE: adjusted}
            scheduled = {**scheduled, "ada_p": adjusted["p"]}
        if self.ema:
            params[EMA], stats[EMA] = self.updated_ema(params, stats, state, step_key, hp["ema_decay"], batch)
        return {**metrics, **scheduled}


    def output_metrics(self, real_logits, fake_logits) -> dict:
        """Mean D(x) and D(G(z)): probabilities for losses in losses.PROBABILISTIC, else the raw outputs
        as d_real_output/d_fake_output."""
        sign = {"d_real_sign": jnp.mean(jnp.sign(real_logits))} if self.ada else {}  # ADA's overfitting measure
        if self.cfg.loss.name in losses.PROBABILISTIC:
            return {"d_real": jnp.mean(jax.nn.sigmoid(real_logits)), "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits)),
                    **sign}
        return {"d_real_output": jnp.mean(real_logits), "d_fake_output": jnp.mean(fake_logits), **sign}

    def learning_rates(self, opt_state) -> dict:
        """lr_NAME: the learning rate each network's last update used."""
        return {f"lr_{n}": learning_rate(opt_state[n]) for n in self.nets}

    def updated_ema(self, params: dict, stats: dict, state: TrainState, step_key: jax.Array, decay: jax.Array,
                    batch):
        """G's moving average after this step's update: a copy of G until train.ema_start, then
        ema <- decay * ema + (1 - decay) * G. Its BatchNorm statistics (if G has any) are its own: the
        averaged G's batch statistics on a fresh latent batch, averaged like G's, because G's running
        statistics describe G's activations, not the average's (BigGAN samples with such statistics)."""
        averaging = state.step + 1 > self.cfg.train.ema_start
        ema = jax.tree.map(lambda e, g: jnp.where(averaging, decay * e + (1 - decay) * g, g),
                           params[EMA], params["generator"])
        if not stats[EMA]:
            return ema, stats[EMA]
        key, local_batch = fold(step_key, keys.EMA_STATISTICS), self.local_batch(self.split_batch(batch)[0])
        labels = self.generated_labels(fold(key, keys.GENERATED_LABELS), local_batch) if self.num_classes else None
        _, ema_stats = self.generate(ema, stats[EMA], key, local_batch, labels)
        return ema, pmean(ema_stats, self.axis_name)

    def constrain_critic(self, d_params):
        """WGAN weight clipping (Arjovsky et al. 2017), after each D update: every D parameter into
        [-loss.clip, loss.clip]; loss.clip = 0 leaves D unconstrained."""
        c = self.cfg.loss.clip
        return d_params if not c else jax.tree.map(lambda p: jnp.clip(p, -c, c), d_params)

    # --- sampling ----------------------------------------------------------------------------
    def sample_fn(self):
        """(state, z (N, latent_dim)[, labels (N,) int32: conditional models]) -> samples in model range."""
        G = self.nets["generator"]
        # With train.ema_decay the samples come from the averaged parameters and their own statistics.
        name = EMA if self.ema else "generator"
        return lambda state, z, labels=None: G.apply(
            {"params": state.params[name], "batch_stats": state.batch_stats[name]}, z, labels=labels, train=False)


def split_d_state(d_stats: dict) -> tuple[dict, dict]:
    """D's batch statistics as Flax keeps them, and the entries of D_STATE_ENTRIES among them."""
    return ({k: v for k, v in d_stats.items() if k not in D_STATE_ENTRIES},
            {k: d_stats[k] for k in D_STATE_ENTRIES if k in d_stats})
