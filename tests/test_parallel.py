"""Data parallelism: one result whatever the device count, under jit and pmap, in one process or two
(jax.distributed over localhost, gloo CPU collectives); the step compiles once per run; bad parallel
input fails at startup with one line."""

import importlib.util
import logging
import pathlib
import socket
import subprocess
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import once_per_process, process_env
from jax.sharding import PartitionSpec as P
from state_compare import LAYOUT_TOLERANCE, PROPORTIONAL_ADAM, state_tree, summing_update, update_difference

from gan_jax import parallel
from gan_jax.config import base_config, validate
from gan_jax.errors import ConfigError
from gan_jax.experiment import Experiment
from gan_jax.models.dcgan import ExampleDropout
from gan_jax.objectives.base import Steps

REPO = pathlib.Path(__file__).resolve().parents[1]
STEPS = 10
# The runs are compared on their changes from the initial state, element by element over parameters,
# BatchNorm statistics and Adam's moments, with Adam's updates proportional to g (tests/state_compare.py).
# The control, a pmap run that sums gradients over devices instead of averaging them, must exceed the
# tolerance 10x.
TOLERANCE = LAYOUT_TOLERANCE
# D keeps the tutorial's dropout (dcgan_mnist's default has none): its per-example keys are part of what
# the layouts must agree on. No moving average of G: its leaves move by 1e-3 of G's, so the layouts'
# rounding, measured against those tiny changes, would exceed any tolerance that still catches a bug.
SETTINGS = {**PROPORTIONAL_ADAM, "model.dropout_rate": 0.3, "train.ema_decay": 0.0}


def smoke_config(mode="jit"):
    spec = importlib.util.spec_from_file_location("dcgan_mnist", REPO / "experiments" / "dcgan_mnist.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config("smoke")
    c.train.steps, c.train.sample_every, c.train.checkpoint_every = STEPS, STEPS // 2, STEPS // 2
    c.parallel.mode = mode
    for field, value in SETTINGS.items():
        section, name = field.split(".")
        c[section][name] = value
    return c


def config_flags(mode="jit"):
    return ["--config", f"{REPO / 'experiments' / 'dcgan_mnist.py'}:smoke", f"--config.train.steps={STEPS}",
            f"--config.train.sample_every={STEPS // 2}",
            f"--config.train.checkpoint_every={STEPS // 2}", f"--config.parallel.mode={mode}",
            *(f"--config.{field}={value}" for field, value in SETTINGS.items())]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch_process(args, devices: int, log_compiles=False) -> subprocess.Popen:
    env = process_env(devices, JAX_LOG_COMPILES="1" if log_compiles else "0")
    return subprocess.Popen([sys.executable, str(REPO / "launch.py"), *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, timeout=400) -> tuple[str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    assert process.returncode == 0, f"exit {process.returncode}:\n{out[-2000:]}\n{err[-4000:]}"
    return out, err


def compiled_steps(log: str) -> int:
    """How many times the train step was compiled, from JAX_LOG_COMPILES output."""
    return sum(("Compiling jit(multi_step)" in line or "Compiling jit(_fun)" in line) for line in log.splitlines())


def final_state(workdir, step=STEPS):
    from gan_jax.sampling import restore

    _, _, state = restore(str(workdir), step)
    return state_tree(state)


def layout_difference(runs, a: str, b: str, step=STEPS) -> float:
    """update_difference of run `a` from run `b` at `step`, printed beside the control's."""
    root, _, _, initial, control = runs
    diff, where = update_difference(final_state(root / a, step), final_state(root / b, step), initial)
    print(f"\n{a} vs {b}: {diff:.2e} ({where}); control (gradients summed over devices, pmap vs jit): "
          f"{control[0]:.2e} ({control[1]})")
    assert control[0] > 10 * TOLERANCE
    return diff


class _CompileCounter(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def train_in_process(cfg, workdir) -> int:
    """Trains in this process (8 devices); returns how many times the train step was compiled."""
    from gan_jax.training import train

    counter = _CompileCounter()
    logger = logging.getLogger("jax")
    logger.addHandler(counter)
    try:
        with jax.log_compiles(True):
            train(cfg, str(workdir))
    finally:
        logger.removeHandler(counter)
    return compiled_steps("\n".join(counter.lines))


# --- the invariance runs: 1 process x 8 devices (jit, pmap), 1 x 1 device, 2 processes x 4 devices ------
@pytest.fixture(scope="module")
@once_per_process
def runs(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("parallel")
    port = free_port()
    start = time.time()
    # Subprocesses first, so that they run while this process trains its own references.
    two = [launch_process([*config_flags(), "--workdir", str(root / "two_processes"),
                           "--coordinator_address", f"localhost:{port}", "--num_processes", "2",
                           "--process_id", str(i), "--initialization_timeout", "120"], devices=4, log_compiles=True)
           for i in range(2)]
    one_device = launch_process([*config_flags(), "--workdir", str(root / "one_device")], devices=1,
                                log_compiles=True)
    # 4 devices: a count between 1 and 8 (2 devices add little and cost ~25 s of this 2-core machine).
    others = {n: launch_process([*config_flags(), "--workdir", str(root / f"{n}_devices")], devices=n) for n in (4,)}
    compiles = {"jit": train_in_process(smoke_config("jit"), root / "jit"),
                "pmap": train_in_process(smoke_config("pmap"), root / "pmap")}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Steps, "update", summing_update)
        train_in_process(smoke_config("pmap"), root / "summed_gradients")
    logs = [finish(p) for p in two]
    two_seconds = time.time() - start
    logs.append(finish(one_device))
    for process in others.values():
        finish(process)
    compiles["two_processes"] = [compiled_steps(err) for _, err in logs[:2]]
    compiles["one_device"] = compiled_steps(logs[2][1])
    print(f"\ntwo-process run: {two_seconds:.0f} s wall (concurrently with the other runs)")
    initial = state_tree(Experiment(smoke_config(), load_train_data=False).init_state())
    control = update_difference(final_state(root / "summed_gradients"), final_state(root / "jit"), initial)
    return root, compiles, logs, initial, control


def test_jit_on_8_devices_matches_1_device(runs):
    assert layout_difference(runs, "jit", "one_device") < TOLERANCE


@pytest.mark.parametrize("devices", [4])
def test_jit_on_4_devices_matches_1_device(runs, devices):
    assert layout_difference(runs, f"{devices}_devices", "one_device") < TOLERANCE


def test_pmap_matches_jit(runs):
    assert layout_difference(runs, "pmap", "jit") < TOLERANCE


def test_two_processes_match_one_process(runs):
    root, _, logs, _, _ = runs
    assert layout_difference(runs, "two_processes", "jit") < TOLERANCE
    # Only process 0 writes logs and samples; both took part in the collective checkpoint.
    assert f"step {STEPS}/{STEPS}" in logs[0][0] and f"step {STEPS}/{STEPS}" not in logs[1][0]
    assert (root / "two_processes" / "samples" / f"step_{STEPS:07d}.png").exists()
    assert (root / "two_processes" / "checkpoints" / str(STEPS)).is_dir()


def test_step_compiles_once_per_run(runs):
    _, compiles, _, _, _ = runs
    assert compiles == {"jit": 1, "pmap": 1, "two_processes": [1, 1], "one_device": 1}, compiles


def test_pmap_run_samples_from_its_checkpoint(runs):
    """The pmap run's checkpoint restores for sampling, and its samples are the jit run's (the same
    training up to float rounding) from the same keys: close, where other latents are far."""
    from gan_jax.sample import sample

    root = runs[0]
    drawn = {}
    for mode in ("pmap", "jit"):
        with np.load(sample(str(root / mode), 16, STEPS)) as f:
            drawn[mode] = f["images"].astype(np.float64)
    assert drawn["pmap"].shape == (16, 28, 28, 1)
    same_keys = np.abs(drawn["pmap"] - drawn["jit"]).mean()
    other_latents = np.abs(drawn["pmap"][:8] - drawn["jit"][8:]).mean()
    assert same_keys < 1.0 and other_latents > 10 * max(same_keys, 0.1), (same_keys, other_latents)


# --- per-example randomness and global BatchNorm statistics at the module level ----------------------
class _BNDropout(nn.Module):
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x, train=True):
        h = nn.BatchNorm(use_running_average=not train, momentum=0.9, axis_name=self.axis_name)(nn.Dense(16)(x))
        return ExampleDropout(0.3, self.axis_name)(h, deterministic=not train)


def test_batchnorm_and_dropout_under_pmap_equal_the_global_batch():
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 5))
    model = _BNDropout()
    variables = model.init(jax.random.PRNGKey(1), x, train=False)
    rngs = {"dropout": jax.random.PRNGKey(2)}
    y, new = model.apply(variables, x, rngs=rngs, mutable=["batch_stats"])
    pmapped = jax.pmap(lambda v, x: _BNDropout(parallel.PMAP_AXIS).apply(v, x, rngs=rngs, mutable=["batch_stats"]),
                       axis_name=parallel.PMAP_AXIS, in_axes=(None, 0))
    y8, new8 = pmapped(variables, x.reshape(8, 2, 5))
    np.testing.assert_allclose(np.asarray(y8).reshape(16, 16), y, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(new8), jax.tree.leaves(new), strict=True):
        np.testing.assert_allclose(np.asarray(a)[3], b, rtol=1e-5, atol=1e-6)


# --- layouts -------------------------------------------------------------------------------------------
def test_mesh_spans_all_devices_in_process_order():
    mesh = parallel.make_mesh()
    assert mesh.shape == {parallel.DATA_AXIS: 8}
    assert [d.process_index for d in mesh.devices.flat] == sorted(d.process_index for d in mesh.devices.flat)


def test_fsdp_shards_large_arrays_and_replicates_small_ones():
    mesh = parallel.make_mesh()
    abstract = {"big": jax.ShapeDtypeStruct((100, 256), jnp.float32), "small": jax.ShapeDtypeStruct((64,), jnp.float32),
                "odd": jax.ShapeDtypeStruct((129, 129), jnp.float32)}
    sh = parallel.state_shardings(mesh, abstract, shard_params=True)
    assert sh["big"].spec == P(None, parallel.DATA_AXIS)
    assert sh["small"].spec == P() and sh["odd"].spec == P()
    assert all(s.spec == P() for s in jax.tree.leaves(parallel.state_shardings(mesh, abstract, False)))


def test_pmap_replicate_and_unreplicate_round_trip():
    mesh = parallel.make_mesh()
    tree = {"a": jnp.arange(6.0).reshape(2, 3), "b": jnp.int32(7)}
    replicated = parallel.pmap_replicate(tree)
    assert replicated["a"].shape == (8, 2, 3) and replicated["a"].sharding == parallel.pmap_sharding()
    back = parallel.pmap_unreplicate(replicated, mesh)
    assert back["a"].sharding.is_fully_replicated and back["a"].sharding.mesh == mesh
    np.testing.assert_array_equal(back["a"], tree["a"])
    assert int(back["b"]) == 7


def test_global_batch_array_is_sharded_along_the_batch():
    mesh = parallel.make_mesh()
    local = np.arange(2 * 16 * 3, dtype=np.uint8).reshape(2, 16, 3)
    x = parallel.global_batch_array(local, parallel.batch_sharding(mesh, 3, batch_axis=1), batch_axis=1)
    assert x.shape == (2, 16, 3) and len(x.addressable_shards) == 8
    assert x.addressable_shards[0].data.shape == (2, 2, 3)
    np.testing.assert_array_equal(np.asarray(x), local)


# --- bad input -----------------------------------------------------------------------------------------
def test_batch_not_divisible_by_devices_is_refused_naming_both_numbers():
    with pytest.raises(ConfigError, match=r"data.batch_size=12 is not divisible by the number of devices \(8\)"):
        parallel.check_batch(12)


def test_unknown_parallel_mode_names_the_accepted_ones():
    c = base_config()
    c.parallel.mode = "spmd"
    with pytest.raises(ConfigError, match="parallel.mode='spmd' is not accepted; accepted: jit, pmap"):
        validate(c)


@pytest.mark.parametrize("process_id", [1, 0])
def test_unreachable_coordinator_fails_within_the_timeout(process_id, tmp_path):
    """Process 1 finds nobody at the address; process 0 waits in vain for process 1. Both end with one
    line and exit 2 soon after --initialization_timeout, instead of hanging or aborting."""
    start = time.time()
    p = launch_process([*config_flags(), "--workdir", str(tmp_path / "run"), "--coordinator_address",
                        f"localhost:{free_port()}", "--num_processes", "2", "--process_id", str(process_id),
                        "--initialization_timeout", "3"], devices=1)
    out, err = p.communicate(timeout=120)
    elapsed = time.time() - start
    assert p.returncode == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "within 3 s" in lines[0], err
    assert "--coordinator_address" in lines[0]
    assert elapsed < 60
    assert not (tmp_path / "run").exists()
