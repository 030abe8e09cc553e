"""The `classifier` objective: the pure update step of a supervised image classifier, trained through
launch.py like the generative models (same pipeline, checkpoints, resume and devices). It trains the
feature networks of the evaluation (gan_jax/evaluate/classify.py).

Augmentation is keyed per example over the global batch, like every draw of a step, so the run is
the same however the batch is split over devices: a random translation of up to data.random_shift
pixels (zero padding, i.e. black) and, with data.random_flip, a horizontal flip."""

import jax
import jax.numpy as jnp
import optax

from gan_jax import keys
from gan_jax.objectives import register
from gan_jax.objectives.base import (
    Steps,
    TrainState,
    example_ids,
    learning_rate,
    pmean,
    random_flip,
    to_model_range,
)


def random_shift(key: jax.Array, x: jnp.ndarray, max_shift: int, ids: jnp.ndarray) -> jnp.ndarray:
    """x (N, H, W, C) in [-1, 1], each example translated by its own (dy, dx) in [-max_shift, max_shift],
    drawn from fold_in(key, ids[i]); uncovered pixels are -1 (black)."""
    if max_shift == 0:
        return x
    s = max_shift
    padded = jnp.pad(x, ((0, 0), (s, s), (s, s), (0, 0)), constant_values=-1.0)

    def one(i, image):
        dy, dx = jax.random.randint(jax.random.fold_in(key, i), (2,), 0, 2 * s + 1)
        return jax.lax.dynamic_slice(image, (dy, dx, 0), x.shape[1:])

    return jax.vmap(one)(ids, padded)


@register("classifier", nets=("classifier",), needs_labels=True, generates=False, needs_images=True)
class ClassifierSteps(Steps):
    """Steps of a supervised classifier. The batch of a step is (images uint8 (1, local_batch, H, W, C),
    labels int (1, local_batch))."""

    def init_state(self, seed: int) -> TrainState:
        key = jax.random.PRNGKey(seed)
        init_key = jax.random.fold_in(key, keys.INIT)
        net = self.nets["classifier"]
        variables = net.init({"params": init_key}, jnp.zeros((2, *self.example_shape)), train=False)
        params, stats = {"classifier": variables["params"]}, {"classifier": variables.get("batch_stats", {})}
        return TrainState(jnp.zeros((), jnp.int32), key, params, stats,
                          {"classifier": self.optimizers["classifier"].init(params["classifier"])})

    def augment(self, key: jax.Array, images_u8: jnp.ndarray) -> jnp.ndarray:
        x = to_model_range(images_u8)
        ids = example_ids(x.shape[0], self.axis_name)
        x = random_shift(jax.random.fold_in(key, 0), x, self.cfg.data.random_shift, ids)
        if self.cfg.data.random_flip:
            x = random_flip(jax.random.fold_in(key, keys.FLIP), x, self.axis_name)
        return x

    def objective(self, p, batch_stats, x: jnp.ndarray, labels: jnp.ndarray):
        """Mean cross-entropy (nats) of images x (N, H, W, C) against int labels (N,), as a function of the
        parameters p: (loss, ({'loss', 'accuracy'}, new BatchNorm statistics))."""
        logits, new = self.nets["classifier"].apply({"params": p, "batch_stats": batch_stats}, x, train=True,
                                                    mutable=["batch_stats"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, ({"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels)}, new["batch_stats"])

    def update_step(self, params, stats, opt_state, batch, step_key, state, hp) -> dict:
        """One update on (images uint8 (1, local_batch, H, W, C), labels (1, local_batch)); metrics: mean
        cross-entropy (nats), batch accuracy, lr."""
        images_u8, labels = batch[0][0], batch[1][0]
        x = self.augment(step_key, images_u8)
        (_, (metrics, new_stats)), grads = jax.value_and_grad(self.objective, has_aux=True)(
            params["classifier"], stats["classifier"], x, labels)
        self.update("classifier", params, opt_state, grads, hp)
        stats["classifier"] = pmean(new_stats, self.axis_name)
        return {**metrics, "lr": learning_rate(opt_state["classifier"])}
