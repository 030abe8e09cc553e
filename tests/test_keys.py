"""The key-fold table (gan_jax/keys.py): every named fold of the base key and every rollback fold is
distinct and out of reach of the step keys fold_in(base, N), N < train.steps <= MAX_STEPS."""

import pytest

from gan_jax import keys
from gan_jax.config import base_config, validate
from gan_jax.errors import ConfigError

BASE_KEY_FOLDS = {"INIT": keys.INIT, "FIXED_LATENTS": keys.FIXED_LATENTS, "SAMPLES": keys.SAMPLES,
                  "EVAL_SAMPLES": keys.EVAL_SAMPLES, "TRAINING_SET": keys.TRAINING_SET,
                  "INTERPOLATIONS": keys.INTERPOLATIONS}


def test_named_and_rollback_folds_are_disjoint_from_steps_and_each_other():
    rollbacks = {keys.ROLLBACK + r for r in range(1, keys.MAX_ROLLBACKS + 1)}
    named = set(BASE_KEY_FOLDS.values())
    assert len(named) == len(BASE_KEY_FOLDS)
    assert not named & rollbacks
    assert min(named | rollbacks) >= keys.MAX_STEPS  # no step N < MAX_STEPS draws a named key
    assert max(named | rollbacks) <= 2**31 - 1  # fold_in takes an int32-range value


@pytest.mark.parametrize("field, value", [("train.steps", keys.MAX_STEPS + 1),
                                          ("train.max_rollbacks", keys.MAX_ROLLBACKS + 1)])
def test_config_refuses_counts_that_would_reach_the_named_folds(field, value):
    cfg = base_config()
    section, name = field.split(".")
    cfg[section][name] = value
    with pytest.raises(ConfigError, match=rf"^{field}={value} is not accepted; accepted: "):
        validate(cfg)
    cfg[section][name] = value - 1
    validate(cfg)
