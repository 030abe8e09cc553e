"""XLA:CPU with several devices: a multi-device step whose calls overlap can deadlock in a collective
(the devices' tasks share a pool of as many threads as devices), and XLA then aborts the process.
`parallel.one_execution_at_a_time` is what the library's steps go through; here a data-parallel
MLP step runs 400 times in a process of 8 CPU devices with XLA's patience cut to 5 s, once through it
and once called bare (the bug's reproduction: it deadlocked within 100 calls in every run tried)."""

import subprocess
import sys

from conftest import process_env

STEPS = 400
SCRIPT = f"""
import sys
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from gan_jax import parallel

mesh = Mesh(np.array(jax.devices()), ("data",))
rep, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))

def loss(w, x):
    h = x
    for layer in w:
        h = jnp.tanh(h @ layer)
    return jnp.mean(h ** 2)

def update(w, x):  # the gradient is averaged over the devices' examples: an all-reduce
    return [a - 0.01 * g for a, g in zip(w, jax.grad(loss)(w, x))]

step = jax.jit(update, in_shardings=(rep, split), out_shardings=rep, donate_argnums=0)
if sys.argv[1] == "waited":
    step = parallel.one_execution_at_a_time(step)
w = [jax.device_put(jnp.eye(256) * 0.5, rep) for _ in range(6)]
x = jax.device_put(np.random.RandomState(0).randn(512, 256).astype(np.float32), split)
for _ in range({STEPS}):
    w = step(w, x)
print(float(jax.block_until_ready(w)[0][0, 0]))
"""
PATIENCE = ("--xla_cpu_collective_call_terminate_timeout_seconds=5 "
            "--xla_cpu_collective_call_warn_stuck_timeout_seconds=5")


def _run(mode):
    env = process_env(devices=8)
    env["XLA_FLAGS"] += f" {PATIENCE}"
    return subprocess.run([sys.executable, "-c", SCRIPT, mode], env=env, capture_output=True, text=True,
                          timeout=600)


def test_overlapping_calls_of_a_multi_device_cpu_step_are_waited_for():
    waited = _run("waited")
    assert waited.returncode == 0, waited.stderr[-2000:]
    assert float(waited.stdout) > 0


def test_without_the_wait_the_step_deadlocks():
    """The reproduction that makes the wait necessary (a race: up to three tries). If a jaxlib fixes the
    bug, this fails and says so, and the wait can go."""
    for _ in range(3):
        bare = _run("bare")
        if bare.returncode != 0:
            break
    assert bare.returncode != 0 and "Termination timeout" in bare.stderr, (
        "the bare step no longer deadlocks on this jaxlib: parallel.one_execution_at_a_time may be unnecessary")
