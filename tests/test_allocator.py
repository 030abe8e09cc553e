"""launch.py and the benchmarks re-execute themselves with tcmalloc preloaded (gan_jax/allocator.py)."""

import os
import subprocess
import sys

import pytest

from gan_jax import allocator

SCRIPT = ("import os; from gan_jax import allocator; "
          "print('pid', os.getpid(), allocator.tcmalloc_loaded(), flush=True); "
          "allocator.reexec_with_tcmalloc(); print('after', os.getpid(), allocator.tcmalloc_loaded())")


def run(env_extra: dict) -> list[list[str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "GAN_JAX_TCMALLOC")}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env={**env, **env_extra}, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return [line.split() for line in out.splitlines()]


@pytest.mark.skipif(allocator.tcmalloc_path() is None or not sys.platform.startswith("linux"),
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
