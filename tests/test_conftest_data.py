"""The `data_dir` fixture of conftest.py: without the shared data folder a test that needs it is
skipped naming GAN_JAX_DATA, unless GAN_JAX_REQUIRE_DATA=1 (CI), which fails it instead."""

import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
# Needs the data folder and nothing heavy: reads MNIST's 10,000 test images.
NEEDS_DATA = "tests/test_readers.py::test_idx_datasets_match_official_md5[test-mnist]"


def run_without_data(tmp_path, **env) -> subprocess.CompletedProcess:
    missing = tmp_path / "no_data"
    environ = {k: v for k, v in os.environ.items() if k != "GAN_JAX_REQUIRE_DATA"}
    environ.update(GAN_JAX_DATA=str(missing), **env)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rsfE", "-p", "no:cacheprovider", NEEDS_DATA],
                          cwd=REPO, env=environ, capture_output=True, text=True, timeout=300)


def test_missing_data_folder_skips_with_the_variable_named(tmp_path):
    out = run_without_data(tmp_path)
    reason = f"needs the shared data folder: GAN_JAX_DATA={tmp_path / 'no_data'} does not exist"
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "1 skipped" in out.stdout and reason in out.stdout, out.stdout[-3000:]


def test_missing_data_folder_fails_when_data_is_required(tmp_path):
    out = run_without_data(tmp_path, GAN_JAX_REQUIRE_DATA="1")
    reason = f"needs the shared data folder: GAN_JAX_DATA={tmp_path / 'no_data'} does not exist"
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    assert "skipped" not in out.stdout and reason in out.stdout, out.stdout[-3000:]
    assert "1 error" in out.stdout or "1 failed" in out.stdout, out.stdout[-3000:]
