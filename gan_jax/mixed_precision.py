"""Mixed precision (`train.compute_dtype`): the networks' forwards, and so their backward passes, in a
lower-precision dtype, with everything the optimizer and the losses see kept in float32.

`ComputeDtype(module, dtype)` stands in for a Flax module: `apply` casts the 'params' collection and the
floating-point inputs to `dtype`, runs the module, and casts its floating-point outputs (the forward's
result, updated BatchNorm statistics, sown features) back to float32. So parameters, optimizer states,
gradients (the cast's transpose returns float32 cotangents), losses and penalties stay float32 while
activations and the products of every layer run in bfloat16: the "bf16 compute, f32 master weights"
recipe of TPU training, without a dtype argument in every model. BatchNorm statistics stay float32
(Flax reduces in float32 and the 'batch_stats' collection is not cast). bfloat16 has float32's exponent
range, so no loss scaling is needed (float16 would need it; it is not offered).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

# train.compute_dtype -> the forwards' dtype (None: the modules as they are, float32).
COMPUTE_DTYPES: dict[str, Any] = {"float32": None, "bfloat16": jnp.bfloat16}


def cast_floating(tree, dtype):
    """Every floating-point array leaf of `tree` as `dtype`; other leaves (ints, keys, None) as they are."""
    def cast(x):
        is_float = hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating)
        return x.astype(dtype) if is_float else x

    return jax.tree.map(cast, tree)


class ComputeDtype:
    """`module` with its forwards in `dtype` (module docstring); other attributes are the module's own."""

    def __init__(self, module, dtype):
        self.module, self.dtype = module, dtype

    def __getattr__(self, name: str):
        return getattr(self.module, name)

    def init(self, *args, **kwargs):
        return self.module.init(*args, **kwargs)

    def apply(self, variables: dict, *args, **kwargs):
        if "params" in variables:
            variables = {**variables, "params": cast_floating(variables["params"], self.dtype)}
        control = {k: kwargs.pop(k) for k in ("rngs", "mutable", "method") if k in kwargs}
        out = self.module.apply(variables, *cast_floating(args, self.dtype), **cast_floating(kwargs, self.dtype),
                                **control)
        return cast_floating(out, jnp.float32)


def with_compute_dtype(nets: dict, name: str) -> dict:
    """The networks of a run with `train.compute_dtype` = `name` (COMPUTE_DTYPES)."""
    dtype = COMPUTE_DTYPES[name]
    return nets if dtype is None else {k: ComputeDtype(net, dtype) for k, net in nets.items()}
