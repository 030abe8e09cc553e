"""launch.py and the benchmarks re-execute themselves with tcmalloc preloaded (gan_jax/cpu_runtime.py)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from gan_jax import cpu_runtime

SCRIPT = ("import os; from gan_jax import cpu_runtime; "
          "print('pid', os.getpid(), cpu_runtime.tcmalloc_loaded(), flush=True); "
          "cpu_runtime.configure_process(); print('after', os.getpid(), cpu_runtime.tcmalloc_loaded())")


def run(env_extra: dict) -> list[list[str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "GAN_JAX_TCMALLOC")}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env={**env, **env_extra}, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return [line.split() for line in out.splitlines()]


@pytest.mark.skipif(cpu_runtime.tcmalloc_path() is None or not sys.platform.startswith("linux"),
                    reason="tcmalloc is not installed (apt-get install libtcmalloc-minimal4)")
def test_reexec_preloads_tcmalloc_in_the_same_process():
    lines = run({})
    # The first run prints, re-executes the same command (same pid) with tcmalloc, which prints again.
    assert [w[0] for w in lines] == ["pid", "pid", "after"]
    assert lines[0][1] == lines[1][1] == lines[2][1]
    assert (lines[0][2], lines[1][2], lines[2][2]) == ("False", "True", "True")


def test_opt_out_leaves_the_process_alone():
    lines = run({"GAN_JAX_TCMALLOC": "0"})
    assert lines == [["pid", lines[0][1], "False"], ["after", lines[0][1], "False"]]


def test_xla_default_is_added_once_and_never_overrides_a_choice():
    flag = cpu_runtime.YNN_FLAG
    assert cpu_runtime.xla_flags("") == f"{flag}="
    assert cpu_runtime.xla_flags("--xla_force_host_platform_device_count=8") == \
        f"--xla_force_host_platform_device_count=8 {flag}="
    assert cpu_runtime.xla_flags(f"{flag}=individual_dot") == f"{flag}=individual_dot"
    assert cpu_runtime.xla_flags(cpu_runtime.xla_flags("")) == f"{flag}="


def test_xla_default_reaches_jax_and_leaves_results_unchanged():
    # The flag must be one this jaxlib accepts (an unknown XLA flag aborts): a process started with it
    # computes a convolution, and its gradient, that match the default kernels' result.
    code = ("import os, sys, numpy as np; from gan_jax import cpu_runtime; cpu_runtime.configure_process(); "
            "import jax, jax.numpy as jnp; from jax import lax; r = np.random.RandomState(0); "
            "x = jnp.asarray(r.randn(4, 7, 7, 8), jnp.float32); k = jnp.asarray(r.randn(5, 5, 8, 6), jnp.float32); "
            "f = lambda x, k: jnp.sum(lax.conv_general_dilated(x, k, (1, 1), 'SAME', "
            "dimension_numbers=('NHWC', 'HWIO', 'NHWC')) ** 2); "
            "g = jax.jit(jax.grad(f, argnums=1))(x, k); np.save(sys.argv[1], np.asarray(g)); "
            "print(os.environ.get('XLA_FLAGS', ''))")
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "GAN_JAX_XLA_DEFAULTS")}
    outs = {}
    for name, extra in (("defaults", {}), ("plain", {"GAN_JAX_XLA_DEFAULTS": "0"})):
        path = f"{os.environ.get('TMPDIR', '/tmp')}/gan_jax_xla_{os.getpid()}_{name}.npy"
        printed = subprocess.run([sys.executable, "-c", code, path], env={**env, **extra, "GAN_JAX_TCMALLOC": "0"},
                                 capture_output=True, text=True, timeout=120, check=True).stdout
        outs[name] = (printed.strip(), np.load(path))
        os.remove(path)
    if cpu_runtime._jaxlib_version().startswith(cpu_runtime.TESTED_JAXLIB):
        assert outs["defaults"][0] == f"{cpu_runtime.YNN_FLAG}="
    assert outs["plain"][0] == ""
    a, b = outs["defaults"][1], outs["plain"][1]
    assert float(abs(a - b).max() / abs(b).max()) < 1e-5
