"""A workdir written before the loss/penalty/packing/EMA/classifier fields existed (gan_ring smoke,
trained by commit 0465bee and kept in tests/data; now experiments/gan_mixture.py:ring,smoke) still
resumes, samples and evaluates: new fields default to the old behaviour and do not count as a config
change. Its checkpoint restores to the arrays stored in it (read back raw by orbax, a second code path),
and the resumed run continues from the stored step and state: its steps 5 and 6 are today's step
applied to the stored state."""

import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np
from conftest import process_env
from state_compare import state_tree, update_difference

REPO = pathlib.Path(__file__).resolve().parents[1]
OLD = REPO / "tests" / "data" / "workdir_0465bee"


def run(*args):
    return subprocess.run([sys.executable, "launch.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env=process_env())


def stored_arrays(workdir, step: int) -> dict:
    """The checkpoint's arrays as orbax reads them without a target: nested dicts, no train-state types."""
    import orbax.checkpoint as ocp

    return ocp.PyTreeCheckpointer().restore((workdir / "checkpoints" / str(step) / "state").resolve())


def check_restored_and_resumed(workdir: str) -> None:
    """Run in a 1-device process (gan_ring smoke's batch of 100 does not split over 8 devices): the
    stored step-4 state restores to the arrays orbax reads raw; after the resume to step 6, that
    checkpoint is today's step applied twice to the stored state (a fresh initialization: the control)."""
    import jax

    from gan_jax.sampling import restore

    workdir = pathlib.Path(workdir)
    exp, _, state = restore(str(workdir), 4)
    raw = stored_arrays(workdir, 4)
    assert int(state.step) == int(raw["step"]) == 4
    np.testing.assert_array_equal(state.key, raw["key"])
    for collection in ("params", "batch_stats", "opt_state"):
        restored, stored = jax.tree.leaves(getattr(state, collection)), jax.tree.leaves(raw[collection])
        assert len(restored) == len(stored), collection
        for a, b in zip(restored, stored, strict=True):
            np.testing.assert_array_equal(a, b)
    _, step, resumed = restore(str(workdir), 6)
    assert step == 6 and int(resumed.step) == 6
    np.testing.assert_array_equal(resumed.key, raw["key"])  # the run's base key, carried over
    expected, _ = jax.jit(exp.builder.multi_step)(state, None)  # steps_per_call = 2
    initial = state_tree(state)
    diff, where = update_difference(state_tree(resumed), state_tree(expected), initial)
    fresh, _ = jax.jit(exp.builder.multi_step)(exp.init_state().replace(step=state.step), None)
    control, control_where = update_difference(state_tree(fresh), state_tree(expected), initial)
    print(f"resumed vs today's steps from the stored state: {diff:.2e} ({where}); from a fresh "
          f"initialization: {control:.2e} ({control_where})")
    # Not bitwise: launch.py runs XLA's own CPU kernels, this process YNNPACK's (gan_jax/cpu_runtime.py).
    assert diff < 1e-3 and control > 1e-2, (diff, control)


def test_an_old_workdir_restores_its_stored_arrays_and_resumes_from_them(tmp_path):
    workdir = tmp_path / "old"
    shutil.copytree(OLD, workdir)
    lines_before = len((workdir / "metrics.jsonl").read_text().splitlines())
    out = run("--config", "experiments/gan_mixture.py:ring,smoke", "--workdir", str(workdir), "--config.train.steps=6")
    assert out.returncode == 0 and "resumed from checkpoint at step 4" in out.stdout, out.stderr[-3000:]
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()[lines_before:]]
    assert records and {r["step"] for r in records} == {6}, records  # logged every 2 steps: it went on from 4
    code = f"import test_old_workdir as t; t.check_restored_and_resumed({str(workdir)!r})"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO / "tests", capture_output=True, text=True,
                         timeout=600, env=process_env())
    print(out.stdout)
    assert out.returncode == 0, out.stderr[-3000:]


def test_an_old_workdir_samples_and_evaluates(tmp_path):
    workdir = tmp_path / "old"
    shutil.copytree(OLD, workdir)
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
