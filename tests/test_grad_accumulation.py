"""train.grad_accumulation = k against the whole-batch step (k = 1), for networks without BatchNorm or
per-example draws (where the two are the same computation): the change of every parameter, statistic and
optimizer state, and the logged metrics, under both GAN update rules (the objectives and the logit fast
path, with R1 and n_critic 2), the VAE's ELBO and IWAE bound; 8 devices under pmap and under jit over a
mesh; a vmapped pair of runs. Controls: gradients summed over the micro-batches instead of averaged."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from state_compare import state_tree, update_difference
from test_steps import PROPORTIONAL_ADAM, _builder, _fixed_batch, _pmap_against_one_device

from gan_jax.errors import ConfigError
from gan_jax.objectives.base import Steps, micro_batches

# Float32 sums of 4 micro-batch means against one mean of 16 examples: reordered reductions only (up to
# 1e-4 seen); the controls, gradients 4 times too large, measure > 10.
TOLERANCE = 1e-3

CASES = {
    "alternating,r1,n_critic2": dict(train__n_critic=2, loss__penalties="r1:1"),
    "simultaneous,fast_path": dict(train__update_rule="simultaneous"),
    "simultaneous,r1": dict(train__update_rule="simultaneous", loss__penalties="r1:1"),
    "alternating,zcr": dict(loss__zcr_discriminator=5.0, loss__zcr_generator=0.5),
    "simultaneous,zcr": dict(train__update_rule="simultaneous", loss__zcr_discriminator=5.0,
                             loss__zcr_generator=0.5),
    "vae": dict(objective="vae"),
    "iwae_k5": dict(objective="vae", loss__iwae_k=5),
}


def _batch(n_critic: int) -> np.ndarray:
    b = _fixed_batch()
    return np.concatenate([b, b[:, ::-1]])[:n_critic]


def _summing_micro_batches(builder):
    """`builder` with the micro-batches' gradients summed instead of averaged: the bug the tests must see."""
    def accumulate(self, grads_fn, part, key):
        grads, aux = Steps.accumulate(self, grads_fn, part, key)
        return jax.tree.map(lambda g: g * self.cfg.train.grad_accumulation, grads), aux
    builder.accumulate = types.MethodType(accumulate, builder)
    return builder


def _steps(builder, batch, n=3):
    state, step = builder.init_state(0), jax.jit(builder.train_step)
    for _ in range(n):
        state, metrics = step(state, batch)
    return state, jax.device_get(metrics)


@pytest.mark.parametrize("case", CASES)
def test_accumulated_steps_equal_the_whole_batch_steps(case):
    overrides = {**CASES[case], **PROPORTIONAL_ADAM}
    (_, whole), (_, accumulated), (_, summing) = (_builder(**overrides), _builder(**overrides,
                                                  train__grad_accumulation=4),
                                                  _builder(**overrides, train__grad_accumulation=4))
    batch = _batch(whole.cfg.train.n_critic)
    initial = state_tree(whole.init_state(0))
    reference, ref_metrics = _steps(whole, batch)
    got, metrics = _steps(accumulated, batch)
    wrong, _ = _steps(_summing_micro_batches(summing), batch)
    diff, where = update_difference(state_tree(got), state_tree(reference), initial)
    control, _ = update_difference(state_tree(wrong), state_tree(reference), initial)
    print(f"\n{case}: accumulated over 4 vs whole batch {diff:.2e} ({where}); summed: {control:.2e}")
    assert diff < TOLERANCE and control > 0.5
    assert set(metrics) == set(ref_metrics)
    for name in ref_metrics:
        np.testing.assert_allclose(metrics[name], ref_metrics[name], rtol=1e-4, atol=1e-6, err_msg=name)


def test_accumulation_under_pmap_equals_one_device_without_it():
    """8 devices x 2 examples, each device's two in two micro-batches of one: the 16-example step."""
    c, single = _builder(train__n_critic=2, loss__penalties="r1:1", **PROPORTIONAL_ADAM)
    c.train.grad_accumulation = 2
    m1, mp = _pmap_against_one_device(c, single, _batch(2))
    np.testing.assert_allclose(mp["penalty_r1"], m1["penalty_r1"], rtol=1e-4)


def test_accumulation_under_jit_over_a_mesh_equals_one_device():
    """The batch sharded over 8 devices: micro-batch j takes rows j, j + k, ... (every device's share)."""
    _, builder = _builder(train__grad_accumulation=2, **PROPORTIONAL_ADAM)
    batch, state = _batch(1), builder.init_state(0)
    reference, _ = jax.jit(builder.train_step)(state, batch)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharded = jax.device_put(batch, NamedSharding(mesh, P(None, "data")))
    got, _ = jax.jit(builder.train_step)(state, sharded)
    diff, where = update_difference(state_tree(got), state_tree(reference), state_tree(state))
    assert diff < TOLERANCE, where


def test_a_vmapped_pair_of_accumulating_runs_equals_each_run_alone():
    _, builder = _builder(train__grad_accumulation=2, **PROPORTIONAL_ADAM)
    batch, hp = _batch(1), builder.hyperparameters()
    states = [builder.init_state(s) for s in (0, 1)]
    alone = [jax.jit(builder.train_step)(s, batch, hp)[0] for s in states]
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *states)
    hps = jax.tree.map(lambda x: jnp.stack([x, x]), hp)
    both, _ = jax.jit(jax.vmap(builder.train_step, in_axes=(0, None, 0)))(stacked, batch, hps)
    for i, one in enumerate(alone):
        diff, where = update_difference(state_tree(jax.tree.map(lambda x, i=i: x[i], both)), state_tree(one),
                                        state_tree(states[i]))
        assert diff < TOLERANCE, (i, where)


def test_micro_batches_take_every_kth_row():
    x = np.arange(12).reshape(6, 2)
    np.testing.assert_array_equal(micro_batches(x, 3), [[[0, 1], [6, 7]], [[2, 3], [8, 9]], [[4, 5], [10, 11]]])


@pytest.mark.parametrize("overrides,message", [
    (dict(train__grad_accumulation=3), "train.grad_accumulation=3 does not divide the batch each program splits (16"),
    (dict(train__grad_accumulation=2, train__top_k=True), "train.grad_accumulation=2 with train.top_k"),
    (dict(train__grad_accumulation=2, model__pack=2), "model.pack=2 does not divide the per-device batch (1"),
])
def test_configs_accumulation_cannot_serve_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        _builder(**overrides)
