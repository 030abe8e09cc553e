"""train.compute_dtype='bfloat16' against float32: the products of every layer run in bfloat16 (read off
the traced program), the outputs, parameters, optimizer states and losses stay float32, a step's change
of the state is float32's within bfloat16's rounding and far from a wrong step's, 8 devices under pmap
agree with one, and a run through launch.py trains as a vectorized sweep."""

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from state_compare import device_zero, state_tree, update_difference
from test_steps import PROPORTIONAL_ADAM, _builder, _fixed_batch, _pmap_builder

from gan_jax import mixed_precision, parallel
from gan_jax.config import base_config, validate
from gan_jax.errors import ConfigError

BF16 = {"train__compute_dtype": "bfloat16"}
# bfloat16 keeps 8 bits of mantissa: a relative rounding of 2^-8 = 0.004 per product, a few of them per layer.
BF16_TOLERANCE = 0.1


def _conv_operand_dtypes(builder, state, batch):
    """The dtypes of the convolutions' and dot products' operands in the traced step."""
    jaxpr = jax.make_jaxpr(builder.train_step)(state, batch)
    found = set()

    def visit(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name in ("conv_general_dilated", "dot_general"):
                found.update(str(v.aval.dtype) for v in eqn.invars)
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                visit(sub)

    visit(jaxpr.jaxpr)
    return found


def test_the_layers_compute_in_bfloat16_and_the_state_stays_float32():
    _, single = _builder(**BF16)
    state, batch = single.init_state(0), _fixed_batch()
    assert _conv_operand_dtypes(single, state, batch) == {"bfloat16"}
    _, plain = _builder()
    assert "bfloat16" not in _conv_operand_dtypes(plain, plain.init_state(0), batch)
    new, metrics = jax.jit(single.train_step)(state, batch)
    dtypes = {str(x.dtype) for x in jax.tree.leaves((new.params, new.opt_state, new.batch_stats))
              if jnp.issubdtype(x.dtype, jnp.floating)}
    assert dtypes == {"float32"}
    assert all(np.asarray(v).dtype in (np.float32, np.bool_, np.int32) for v in metrics.values())
    assert bool(metrics["finite"].all())


def test_a_bfloat16_step_changes_the_state_as_float32_does_within_its_rounding():
    """One step from the same state: the change of every parameter and statistic, bfloat16 against float32
    (update_difference's scale), and a control that is wrong by a factor (gradients doubled) far outside it."""
    batch = _fixed_batch()
    (_, plain), (_, bf16), (_, doubled) = (_builder(**PROPORTIONAL_ADAM), _builder(**BF16, **PROPORTIONAL_ADAM),
                                           _builder(**{**PROPORTIONAL_ADAM, "optimizer__learning_rate": 2.0}))
    start = plain.init_state(0)
    ref = state_tree(jax.jit(plain.train_step)(start, batch)[0])
    diff, where = update_difference(state_tree(jax.jit(bf16.train_step)(start, batch)[0]), ref, state_tree(start))
    control, _ = update_difference(state_tree(jax.jit(doubled.train_step)(start, batch)[0]), ref, state_tree(start))
    print(f"\nbfloat16 vs float32, one step: {diff:.3f} ({where}); learning rate doubled: {control:.3f}")
    assert 0 < diff < BF16_TOLERANCE < control


def test_8_devices_under_pmap_agree_with_one_in_bfloat16():
    c, single = _builder(train__update_rule="simultaneous", model__generator_batch_norm=True, **BF16,
                         **PROPORTIONAL_ADAM)
    batch, start = _fixed_batch(), single.init_state(0)
    one = state_tree(jax.jit(single.train_step)(start, batch)[0])
    sp, _ = jax.pmap(_pmap_builder(c).train_step, axis_name=parallel.PMAP_AXIS)(parallel.pmap_replicate(start),
                                                                                 parallel.pmap_split(batch, 1))
    diff, where = update_difference(state_tree(device_zero(sp)), one, state_tree(start))
    print(f"\n8 devices vs 1 in bfloat16: {diff:.3f} ({where})")
    assert diff < BF16_TOLERANCE


def test_runs_stacked_as_a_vectorized_sweep_step_each_as_alone_in_bfloat16():
    _, single = _builder(**BF16)
    batch, starts = _fixed_batch(), [single.init_state(seed) for seed in (0, 1)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *starts)
    together = jax.jit(jax.vmap(single.train_step, in_axes=(0, None)))(stacked, batch)[0]
    for i, start in enumerate(starts):
        alone = state_tree(jax.jit(single.train_step)(start, batch)[0])
        diff, where = update_difference(state_tree(jax.tree.map(lambda x, i=i: x[i], together)), alone,
                                        state_tree(start))
        assert diff < BF16_TOLERANCE, (diff, where)


def test_casting_leaves_integers_keys_and_batch_statistics_alone():
    tree = {"x": jnp.ones(3), "i": jnp.arange(3), "k": jax.random.PRNGKey(0), "n": None}
    out = mixed_precision.cast_floating(tree, jnp.bfloat16)
    assert out["x"].dtype == jnp.bfloat16 and out["i"].dtype == jnp.int32 and out["k"].dtype == jnp.uint32
    assert mixed_precision.with_compute_dtype({"g": object()}, "float32")["g"].__class__ is object


def test_an_unknown_dtype_is_refused_in_one_line():
    c = base_config()
    c.train.compute_dtype = "float16"
    with pytest.raises(ConfigError) as e:
        validate(c)
    assert str(e.value).startswith("train.compute_dtype='float16'") and "float32" in str(e.value) \
        and "bfloat16" in str(e.value) and "\n" not in str(e.value)
