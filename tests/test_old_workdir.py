"""A workdir written before the loss/penalty/packing/EMA/classifier fields existed (gan_ring smoke,
now experiments/gan_mixture.py:ring,smoke; trained by commit 0465bee and kept in tests/data) still
resumes, samples and evaluates: new fields default to the old behaviour and do not count as a config
change."""

import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
OLD = REPO / "tests" / "data" / "workdir_0465bee"


def run(*args):
    return subprocess.run([sys.executable, "launch.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "XLA_FLAGS": ""})


def test_an_old_workdir_resumes_samples_and_evaluates(tmp_path):
    workdir = tmp_path / "old"
    shutil.copytree(OLD, workdir)
    out = run("--config", "experiments/gan_mixture.py:ring,smoke", "--workdir", str(workdir), "--config.train.steps=6")
    assert out.returncode == 0 and "resumed from checkpoint at step 4" in out.stdout, out.stderr[-3000:]
    out = run("--mode=sample", "--workdir", str(workdir), "--num_samples", "7")
    assert out.returncode == 0, out.stderr[-3000:]
    with np.load(workdir / "samples.npz") as f:
        assert f["points"].shape == (7, 2) and np.isfinite(f["points"]).all()
    out = run("--mode=eval", "--workdir", str(workdir), "--step", "4")
    assert out.returncode == 0 and (workdir / "eval_step_0000004.json").exists(), out.stderr[-3000:]


def test_a_workdir_of_the_objective_once_named_dcgan_resumes_samples_and_evaluates(tmp_path):
    """objective='dcgan' was the GAN objective registered under a model's name too; a workdir whose
    config.json says so reads as objective='gan' (experiment.RENAMED_VALUES): the experiment, now
    objective='gan', resumes it, and it samples and evaluates."""
    import json

    from gan_jax.experiment import load_workdir_config

    workdir = tmp_path / "dcgan"
    shutil.copytree(OLD, workdir)
    config = json.loads((workdir / "config.json").read_text())
    (workdir / "config.json").write_text(json.dumps({**config, "objective": "dcgan"}))
    assert load_workdir_config(str(workdir)).objective == "gan"
    out = run("--mode=sample", "--workdir", str(workdir), "--num_samples", "7")
    assert out.returncode == 0, out.stderr[-3000:]
    out = run("--mode=eval", "--workdir", str(workdir), "--step", "4")
    assert out.returncode == 0 and (workdir / "eval_step_0000004.json").exists(), out.stderr[-3000:]
    out = run("--config", "experiments/gan_mixture.py:ring,smoke", "--workdir", str(workdir), "--config.train.steps=6")
    assert out.returncode == 0 and "resumed from checkpoint at step 4" in out.stdout, out.stderr[-3000:]
    out = run("--config", "experiments/gan_mixture.py:ring,smoke", "--workdir", str(tmp_path / "new"),
              "--config.objective=dcgan", "--config.train.steps=1")
    assert out.returncode == 2 and "objective='dcgan' is not accepted; accepted: classifier, gan, vae" in out.stderr
