"""The `classifier` objective: the pure update step of a supervised image classifier, trained through
launch.py like the generative models (same pipeline, checkpoints, resume and devices). It trains the
feature networks of the evaluation (gan_jax/evaluate/classify.py).

Augmentation is keyed per example over the global batch, like every draw of a step, so the run is
the same however the batch is split over devices: a random translation of up to data.random_shift
pixels (zero padding, i.e. black) and, with data.random_flip, a horizontal flip."""

import jax
import jax.numpy as jnp
import ml_collections
import optax

from gan_jax import keys
from gan_jax.steps import (
    TrainState,
    _all_finite,
    _apply_updates,
    _example_ids,
    _pmean,
    _random_flip,
    make_optimizers,
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


class ClassifierSteps:
    """What the pure steps close over: the network, its optimizer and the static config. The batch of
    a step is (images uint8 (1, local_batch, H, W, C), labels int (1, local_batch))."""

    needs_labels = True

    def __init__(self, cfg: ml_collections.ConfigDict, nets: dict, example_shape: tuple[int, ...],
                 axis_name: str | None = None):
        self.cfg, self.net, self.example_shape, self.axis_name = cfg, nets["classifier"], example_shape, axis_name
        self.optimizer = make_optimizers(cfg, ("classifier",))["classifier"]

    def init_state(self, seed: int) -> TrainState:
        key = jax.random.PRNGKey(seed)
        init_key = jax.random.fold_in(key, keys.INIT)
        variables = self.net.init({"params": init_key}, jnp.zeros((2, *self.example_shape)), train=False)
        params, stats = {"classifier": variables["params"]}, {"classifier": variables.get("batch_stats", {})}
        return TrainState(jnp.zeros((), jnp.int32), key, params, stats,
                          {"classifier": self.optimizer.init(params["classifier"])})

    def augment(self, key: jax.Array, images_u8: jnp.ndarray) -> jnp.ndarray:
        x = to_model_range(images_u8, self.cfg.objective)
        ids = _example_ids(x.shape[0], self.axis_name)
        x = random_shift(jax.random.fold_in(key, 0), x, self.cfg.data.random_shift, ids)
        if self.cfg.data.random_flip:
            x = _random_flip(jax.random.fold_in(key, 1), x, self.axis_name)
        return x

    def train_step(self, state: TrainState, batch) -> tuple[TrainState, dict]:
        """One update on (images, labels); metrics: mean cross-entropy (nats), batch accuracy, lr."""
        images_u8, labels = batch[0][0], batch[1][0]
        x = self.augment(jax.random.fold_in(state.key, state.step), images_u8)

        def loss_fn(p):
            logits, new = self.net.apply({"params": p, "batch_stats": state.batch_stats["classifier"]}, x,
                                         train=True, mutable=["batch_stats"])
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            return loss, (logits, new["batch_stats"])

        (loss, (logits, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params["classifier"])
        params, opt = _apply_updates(state.params["classifier"], state.opt_state["classifier"],
                                     _pmean(grads, self.axis_name), self.optimizer)
        metrics = _pmean({"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels),
                          "lr": opt.hyperparams["learning_rate"]}, self.axis_name)
        metrics["finite"] = _all_finite(params) & jnp.isfinite(metrics["loss"])
        state = state.replace(step=state.step + 1, params={"classifier": params},
                              batch_stats={"classifier": _pmean(stats, self.axis_name)},
                              opt_state={"classifier": opt})
        return state, metrics

    def multi_step(self, state: TrainState, batches, length: int | None = None) -> tuple[TrainState, dict]:
        """K = `length` (default train.steps_per_call) updates in one dispatch; metrics stacked (K,)."""
        k = self.cfg.train.steps_per_call if length is None else length
        if k == 1:  # no scan: XLA:CPU runs the step's convolutions far slower inside a loop
            state, metrics = self.train_step(state, jax.tree.map(lambda a: a[0], batches))
            return state, jax.tree.map(lambda m: m[None], metrics)
        return jax.lax.scan(self.train_step, state, batches, length=k)

    def sample_fn(self):
        return None  # a classifier generates nothing
