"""The GAN's update rules (train.update_rule), one function each in UPDATE_RULES: (steps, params, stats,
opt_state, sn_vectors, batch, step_key, step, hp, base_key) -> (sn_vectors, metrics), replacing entries of
params, stats and opt_state in place. `steps` is the GanSteps (or subclass) whose objectives, forwards and
updates they call, so a subclass's override is what runs (typed as its base, Steps: objectives/gan.py imports
this module). A new rule is one function registered here.

`alternating`: n_critic D updates, then G against the updated D. `simultaneous`: both networks from the
same parameters (the TensorFlow DCGAN tutorial's step), through the objectives, or without penalties,
class losses and overridden objectives in logit space (`logit_space_grads`, the same computation).
Every gradient goes through `steps.accumulate` (train.grad_accumulation micro-batches). With zCR (Zhao et
al. 2021; loss.zcr_discriminator, loss.zcr_generator) each generated batch G(z) comes with G(z + sigma eps),
drawn from the update key's ZCR fold, and both reach the objectives (`perturbed=`)."""

import jax

from gan_jax import keys
from gan_jax.objectives.base import Steps, pmean
from gan_jax.objectives.labels import BatchLabels, labelled
from gan_jax.ops import spectral_norm

fold = jax.random.fold_in


def generated_batches(steps: Steps, g_stats: dict, z, z_t, fake_labels):
    """p_g -> ((G(z), G(z_t) or None with zCR off), G's new statistics from G(z)): the function whose
    value, or VJP, the rules take."""
    def decode(p_g):
        fake, s = steps.decode(p_g, g_stats, z, fake_labels)
        return (fake, None if z_t is None else steps.decode(p_g, g_stats, z_t, fake_labels)[0]), s
    return decode


def zcr_kwargs(perturbed, hp=None) -> dict:
    """The objectives' keyword for zCR's generated batch (and G's hp): none with zCR off, so that an
    objective written without it serves."""
    return {} if perturbed is None else {"perturbed": perturbed, **({} if hp is None else {"hp": hp})}


def generator_objective_of(steps: Steps, p_d, d_stats, sn_vectors, real, key, labels: BatchLabels, hp):
    """(G's batch, its zCR partner or None) -> generator_objective's (loss, metrics) against D (p_d, d_stats)."""
    return lambda generated: steps.generator_objective(
        generated[0], p_d, d_stats, sn_vectors, real, key,
        **{**steps.generator_kwargs(labels, hp), **zcr_kwargs(generated[1], hp)})


def critic_update(steps: Steps, params, stats, opt_state, sn_vectors, real, generated, key, update_index, hp,
                  labels: BatchLabels) -> dict:
    """One D update in place; returns its objective's metrics. `generated`: G's batch and its zCR partner
    (or None), or with train.grad_accumulation > 1 their latents, decoded micro-batch by micro-batch
    (G's statistics of those forwards kept)."""
    from_latents = steps.cfg.train.grad_accumulation > 1

    def grads(part, key):
        real, generated, labels = part
        g_stats = stats["generator"]
        if from_latents:
            generated, g_stats = generated_batches(steps, g_stats, *generated, labels.fake)(params["generator"])
        fake, perturbed = jax.lax.stop_gradient(generated)
        (_, (metrics, s)), d_grads = jax.value_and_grad(steps.discriminator_objective, has_aux=True)(
            params["discriminator"], stats["discriminator"], sn_vectors, real, fake, key, update_index, hp,
            **labelled(labels), **zcr_kwargs(perturbed))
        return d_grads, (metrics, s, g_stats)

    grads, (metrics, s, stats["generator"]) = steps.accumulate(grads, (real, generated, labels), key)
    stats["discriminator"] = steps.after_update(s, metrics)
    steps.update("discriminator", params, opt_state, grads, hp)
    params["discriminator"] = steps.constrain_critic(params["discriminator"])
    return metrics


def alternating(steps: Steps, params, stats, opt_state, sn_vectors, batch, step_key, step, hp, base_key):
    batch_u8, real_labels = steps.split_batch(batch)
    n_critic, local_batch = steps.cfg.train.n_critic, steps.local_batch(batch_u8)
    whole_batch = steps.cfg.train.grad_accumulation == 1
    for i in range(n_critic):
        if sn_vectors is not None:  # one power iteration per D update
            sn_vectors = spectral_norm.power_iteration(params["discriminator"], sn_vectors)
        key = fold(step_key, keys.CRITIC_UPDATE + i)
        real = steps.real_examples(fold(key, keys.REAL), None if batch_u8 is None else batch_u8[i], base_key)
        labels = steps.batch_labels(key, real_labels, i, local_batch)
        z = steps.latents(fold(key, keys.LATENT), local_batch)
        latents = (z, steps.perturbed_latents(z, fold(key, keys.ZCR), local_batch, hp))
        decode = generated_batches(steps, stats["generator"], *latents, labels.fake)
        if not whole_batch:  # D's update decodes the latents micro-batch by micro-batch; G's update again
            generated = latents
        elif i == n_critic - 1:
            # The last critic update's fake batch is reused for the generator update (one G
            # forward per step, as in the PyTorch DCGAN): keep its VJP.
            generated, g_vjp, stats["generator"] = jax.vjp(decode, params["generator"], has_aux=True)
        else:
            generated, stats["generator"] = decode(params["generator"])
        d_metrics = critic_update(steps, params, stats, opt_state, sn_vectors, real, generated, key,
                                  step * n_critic + i, hp, labels)  # the last D update's are logged
    g_key = fold(step_key, keys.GENERATOR_UPDATE)
    if whole_batch:
        objective = generator_objective_of(steps, params["discriminator"], stats["discriminator"], sn_vectors, real,
                                           g_key, labels, hp)
        (_, g_metrics), generated_grads = jax.value_and_grad(objective, has_aux=True)(generated)
        (g_grads,) = g_vjp(generated_grads)
    else:
        g_grads, g_metrics = steps.accumulate(
            lambda part, k: generator_grads(steps, params, stats, sn_vectors, *part, k, hp), (real, latents, labels),
            g_key)
    stats["generator"] = pmean(stats["generator"], steps.axis_name)
    steps.update("generator", params, opt_state, g_grads, hp)
    return sn_vectors, {**d_metrics, **g_metrics, **steps.learning_rates(opt_state)}


def generator_grads(steps: Steps, params, stats, sn_vectors, real, latents, labels: BatchLabels, key, hp):
    """G's gradients from its latents and their zCR partners (G's forward again, its statistics not kept)
    and its objective's metrics."""
    def objective(p_g):
        generated, _ = generated_batches(steps, stats["generator"], *latents, labels.fake)(p_g)
        return generator_objective_of(steps, params["discriminator"], stats["discriminator"], sn_vectors, real, key,
                                      labels, hp)(generated)

    (_, metrics), grads = jax.value_and_grad(objective, has_aux=True)(params["generator"])
    return grads, metrics


def simultaneous(steps: Steps, params, stats, opt_state, sn_vectors, batch, step_key, step, hp, base_key):
    """Both networks step from the same parameters (the TensorFlow DCGAN tutorial's step), with
    the keys of the alternating rule's (only) critic update. n_critic is 1 (checked by the config)."""
    batch_u8, real_labels = steps.split_batch(batch)
    if sn_vectors is not None:
        sn_vectors = spectral_norm.power_iteration(params["discriminator"], sn_vectors)
    key, local_batch = fold(step_key, keys.CRITIC_UPDATE), steps.local_batch(batch_u8)
    real = steps.real_examples(fold(key, keys.REAL), None if batch_u8 is None else batch_u8[0], base_key)
    labels = steps.batch_labels(key, real_labels, 0, local_batch)
    z = steps.latents(fold(key, keys.LATENT), local_batch)
    latents = (z, steps.perturbed_latents(z, fold(key, keys.ZCR), local_batch, hp))
    p_d, d_stats = params["discriminator"], stats["discriminator"]

    def grads(part, key):
        real, latents, labels = part
        generated, g_vjp, g_stats = jax.vjp(generated_batches(steps, stats["generator"], *latents, labels.fake),
                                            params["generator"], has_aux=True)
        if steps.logit_fast_path:
            d_metrics, g_metrics, d_grads, fake_grad, new_d_stats = logit_space_grads(
                steps, p_d, d_stats, sn_vectors, real, generated[0], key, labels)
            generated_grads = (fake_grad, None)
        else:
            fake, perturbed = jax.lax.stop_gradient(generated)
            (_, (d_metrics, new_d_stats)), d_grads = jax.value_and_grad(steps.discriminator_objective, has_aux=True)(
                p_d, d_stats, sn_vectors, real, fake, key, step, hp, **labelled(labels), **zcr_kwargs(perturbed))
            objective = generator_objective_of(steps, p_d, d_stats, sn_vectors, real, key, labels, hp)
            (_, g_metrics), generated_grads = jax.value_and_grad(objective, has_aux=True)(generated)
        (g_grads,) = g_vjp(generated_grads)
        return (d_grads, g_grads), (d_metrics, g_metrics, new_d_stats, g_stats)

    (d_grads, g_grads), (d_metrics, g_metrics, new_d_stats, stats["generator"]) = steps.accumulate(
        grads, (real, latents, labels), key)
    steps.update("discriminator", params, opt_state, d_grads, hp)
    params["discriminator"] = steps.constrain_critic(params["discriminator"])
    steps.update("generator", params, opt_state, g_grads, hp)
    stats.update(generator=pmean(stats["generator"], steps.axis_name),
                 discriminator=steps.after_update(new_d_stats, d_metrics))
    return sn_vectors, {**d_metrics, **g_metrics, **steps.learning_rates(opt_state)}


def logit_space_grads(steps: Steps, p_d, d_stats, sn_vectors, real, fake, key, labels: BatchLabels):
    """The plain objectives' gradients from one D forward per batch: each loss's gradient with
    respect to the logits, pulled back through the same forward (D's parameters get d_loss's, the
    generated images g_loss's; XLA drops the other half of each pullback). Returns (D's metrics,
    G's metrics, D's gradients, the generated batch's gradient, D's new stats)."""
    def discriminate_both(p_d, fake_images):
        real_logits, s = steps.discriminate(p_d, d_stats, sn_vectors, real, fold(key, keys.D_REAL),
                                           labels=labels.real)
        fake_logits, s = steps.discriminate(p_d, s, sn_vectors, fake_images, fold(key, keys.D_FAKE),
                                           labels=labels.fake)
        return (real_logits, fake_logits), s

    logits, d_vjp, new_stats = jax.vjp(discriminate_both, p_d, fake, has_aux=True)
    d_loss, d_logit_grads = jax.value_and_grad(lambda lg: steps.loss_fn(*lg)[0])(logits)
    g_loss, g_logit_grads = jax.value_and_grad(lambda lg: steps.loss_fn(*lg)[1])(logits)
    d_grads, _ = d_vjp(d_logit_grads)
    _, fake_grad = d_vjp(g_logit_grads)
    d_metrics = {"d_loss": d_loss, **steps.output_metrics(*logits)}
    return d_metrics, {"g_loss": g_loss}, d_grads, fake_grad, new_stats


UPDATE_RULES = {"alternating": alternating, "simultaneous": simultaneous}
