"""config.validate refuses every non-finite number and every value outside its range, naming the field;
memory.check_fits refuses a step larger than a device, naming the largest array."""

import importlib.util
import math
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gan_jax import memory
from gan_jax.config import base_config, ranges, validate
from gan_jax.errors import ConfigError

REPO = pathlib.Path(__file__).resolve().parents[1]


def config_with(field: str, value) -> ml_collections.ConfigDict:
    c = base_config()
    section, _, name = field.rpartition(".")
    target = c[section] if section else c
    with target.ignore_type():
        if name in target and isinstance(target[name], ml_collections.FieldReference):
            target[name] = value
        else:
            setattr(target, name, value)
    return c


def inside(low, high, low_in, high_in):
    """A value inside the range, of the field's natural type."""
    if high is not None:
        return (low + high) / 2
    return low + 1


@pytest.mark.parametrize("field", sorted(ranges()))
def test_every_ranged_field_refuses_nan_inf_and_out_of_range(field):
    low, high, low_in, high_in = ranges()[field]
    validate(config_with(field, inside(low, high, low_in, high_in)))
    refused = [math.nan, math.inf, -math.inf, low - 1]
    if not low_in:
        refused.append(low)
    if high is not None:
        refused.append(high + 1)
        if not high_in:
            refused.append(high)
    for value in refused:
        c = config_with(field, value)
        stored = c[field.split(".")[0]][field.split(".")[1]] if "." in field else c[field]  # 1 -> 1.0 in floats
        with pytest.raises(ConfigError) as e:
            validate(c)
        message = str(e.value)
        assert message.startswith(f"{field}={stored!r} is not accepted; accepted: "), message
        assert len(message.splitlines()) == 1
    if low_in:
        validate(config_with(field, low))


def test_model_fields_ranges_and_defaults_come_from_the_model_registry(monkeypatch):
    """A model registered with its fields: validate checks their ranges and choices, naming what the
    registration accepts, and the builder reads the declared default where the config has none."""
    from gan_jax import models

    monkeypatch.setattr(models, "MODELS", dict(models.MODELS))  # the registration is undone after the test
    monkeypatch.setattr(models, "MODEL_FIELDS", dict(models.MODEL_FIELDS))
    built = {}

    @models.register("test_model", {"test_width": models.Field(8, models.POSITIVE),
                                    "test_kind": models.Field("a", choices=("a", "b"))})
    def build(cfg, example_shape):
        built.update(models.settings(cfg))
        return {}

    c = base_config()
    c.model.name = "test_model"
    models.build(c.model, (2,))
    assert built["test_width"] == 8 and built["test_kind"] == "a" and c.model.test_width is None
    for field, value, accepted in (("test_width", 0, "> 0"), ("test_kind", "c", "a, b")):
        bad = base_config()
        bad.model[field] = value
        with pytest.raises(ConfigError, match=rf"^model.{field}={value!r} is not accepted; accepted: {accepted}$"):
            validate(bad)


def test_a_model_field_the_experiment_leaves_out_can_be_set_from_the_command_line_and_by_sweeps():
    """vaegan_mnist does not set model.dropout_rate (its D's, 0.3 by default): absl's `--config.` override,
    launch.py's own parser, reaches the model, and so does a sweep's set_fields; left out, the model
    reads its declared default; a value of another type is refused."""
    from absl import flags
    from ml_collections import config_flags

    from gan_jax import models
    from gan_jax.config import set_fields

    def parsed(*overrides):
        argv = ["launch.py", "--config", str(REPO / "experiments/vaegan_mnist.py"), *overrides]
        flag_values = flags.FlagValues()
        config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values, lock_config=True,
                                        sys_argv=argv)
        flag_values(argv)
        return flag_values.config

    assert models.settings(parsed().model)["dropout_rate"] == 0.3
    assert models.settings(parsed("--config.model.dropout_rate=0.125").model)["dropout_rate"] == 0.125
    assert models.settings(parsed("--config.model.hidden=64").model)["hidden"] == 64
    swept = set_fields(parsed(), {"model.dropout_rate": 0.0})
    assert models.settings(swept.model)["dropout_rate"] == 0.0
    with pytest.raises(flags.IllegalFlagValueError):
        parsed("--config.model.hidden=wide")


@pytest.mark.parametrize("field,registry", [("optimizer.schedule", "gan_jax.objectives.base:SCHEDULES"),
                                            ("train.update_rule", "gan_jax.objectives.gan_updates:UPDATE_RULES"),
                                            ("model.conv_impl", "gan_jax.models:SHARED_FIELDS")])
def test_choice_lists_are_the_registries(field, registry):
    """The accepted names validate lists are its registry's keys, in its order (a second code path:
    the registry itself); a name the registry lacks is refused."""
    import importlib

    module, _, name = registry.partition(":")
    table = getattr(importlib.import_module(module), name)
    accepted = table["conv_impl"].choices if name == "SHARED_FIELDS" else tuple(table)
    c = config_with(field, "no_such_name")
    with pytest.raises(ConfigError, match=rf"^{field}='no_such_name' is not accepted; accepted: "
                                          rf"{', '.join(accepted)}$"):
        validate(c)
    for value in accepted:
        validate(config_with(field, value))


def test_nan_is_refused_in_any_numeric_field_even_unranged():
    c = config_with("model.some_new_scale", float("nan"))
    with pytest.raises(ConfigError, match=r"^model.some_new_scale=nan is not accepted; accepted: a finite number"):
        validate(c)
    validate(config_with("model.some_new_scale", -3.5))  # unranged: any finite value


@pytest.mark.parametrize("path", sorted((REPO / "experiments").glob("*.py")), ids=lambda p: p.stem)
def test_every_experiment_and_its_smoke_variant_validate(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for arg in (None, *module.VARIANTS):
        validate(module.get_config(arg))


def test_needed_bytes_of_a_compiled_step_counts_arguments_and_temporaries():
    x = jax.ShapeDtypeStruct((256, 256), jnp.float32)
    compiled = jax.jit(lambda a: (a @ a + 1.0).sum()).lower(x).compile()
    needed = memory.needed_bytes(compiled)
    assert needed is not None and needed >= 256 * 256 * 4  # at least its argument


def test_check_fits_names_the_largest_array(monkeypatch):
    state = {"generator": {"kernel": jax.ShapeDtypeStruct((1000, 4000), jnp.float32),
                           "bias": jax.ShapeDtypeStruct((4000,), jnp.float32)}}
    assert memory.state_bytes(state) == 4 * (4_000_000 + 4000)
    monkeypatch.setattr(memory, "available_bytes", lambda: (10 * 2**20, "test memory"))
    with pytest.raises(memory.InsufficientMemory) as e:
        memory.check_fits(None, state)  # 3 x 16 MB > 10 MiB
    assert "['generator']['kernel'] (1000, 4000)" in str(e.value) and "test memory" in str(e.value)
    monkeypatch.setattr(memory, "available_bytes", lambda: (100 * 2**20, "test memory"))
    memory.check_fits(None, state)


def test_available_bytes_is_the_host_share_on_cpu():
    available, kind = memory.available_bytes()
    with open("/proc/meminfo") as f:
        total = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal"))
    assert 0 < available * jax.local_device_count() <= total and "host" in kind
    assert np.isfinite(available)
