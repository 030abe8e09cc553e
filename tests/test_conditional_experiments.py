"""The class-conditional experiments (experiments/cdcgan_mnist.py, acgan_mnist.py): their smoke variants
train, sample per class (samples.npz records the labels; the API gives the same samples) and resume;
and conditional runs that differ in AC-GAN's class weights train as one vectorized program, each as it
trains alone."""

import json
import textwrap

import numpy as np
import pytest
from conftest import load_experiment
from PIL import Image
from state_compare import state_tree

import gan_jax
from gan_jax import sweep
from gan_jax.experiment_files import load_experiment_file
from gan_jax.sample import sample
from gan_jax.training import train

CLASS_METRICS = {"acgan_mnist": {"d_class_real", "d_class_fake", "g_class"}, "cdcgan_mnist": set()}


@pytest.mark.parametrize("name", ["cdcgan_mnist", "acgan_mnist"])
def test_smoke_trains_samples_per_class_and_resumes(name, data_dir, tmp_path, capsys):
    cfg = load_experiment(f"{name}:smoke")
    workdir = str(tmp_path / name)
    train(cfg, workdir)
    records = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    logged = set().union(*(r for r in records if "d_loss" in r))
    assert CLASS_METRICS[name] <= logged and not ({"d_class_real", "g_class"} - CLASS_METRICS[name]) & logged
    grid = Image.open(tmp_path / name / "samples" / "step_0000004.png")
    assert grid.size == (2 * (8 * 30 + 2), 2 * (10 * 30 + 2))  # a row per digit
    sample(workdir, 25, labels="3")
    with np.load(tmp_path / name / "samples.npz") as f:
        images, labels = f["images"], f["labels"]
    assert images.shape == (25, 28, 28, 1) and labels.dtype == np.int32 and set(labels.tolist()) == {3}
    assert Image.open(tmp_path / name / "samples_step_0000004.png").size == (2 * (8 * 30 + 2), 2 * 32)  # one row
    run = gan_jax.load_run(workdir)
    np.testing.assert_array_equal(run.sample(8, labels=3), images[:8])  # the first n of --mode=sample
    assert not np.array_equal(run.sample(8, labels=4), images[:8])
    sample(workdir, 20, labels="0,1")
    with np.load(tmp_path / name / "samples.npz") as f:
        assert f["labels"].tolist() == [0, 1] * 10
    capsys.readouterr()
    cfg.train.steps = 6
    train(cfg, workdir)
    assert "resumed from checkpoint at step 4" in capsys.readouterr().out
    steps = [json.loads(line)["step"] for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 6


ACGAN_SWEEP = """
from gan_jax import sweep
from gan_jax.config import base_config


def get_config(arg=None):
    c = base_config()
    c.data.name, c.data.source, c.data.batch_size = "quickstart_digits", "embedded", 8
    c.model.num_classes, c.model.discriminator_conditioning = 10, "auxiliary"
    c.model.generator_width = c.model.discriminator_width = 8
    c.train.steps, c.train.steps_per_call = 4, 2
    c.train.log_every = c.train.sample_every = c.train.checkpoint_every = 4
    c.optimizer.eps = 10.0  # far above |g|: updates lr / eps * m, so near-zero gradients stay near zero
    c.optimizer.learning_rate = 0.1
    return c


def get_sweep(arg=None):
    return sweep.axis("loss.class_weight_fake", [0.5, 4.0])
"""
RUN_TOLERANCE = 1e-3  # tests/test_sweep.py's, for the same comparison


def test_conditional_runs_differing_in_class_weights_train_as_one_program_each_as_alone(tmp_path):
    from test_sweep import run_difference, run_sweep

    from gan_jax.experiment import Experiment

    path = tmp_path / "acgan.py"
    path.write_text(textwrap.dedent(ACGAN_SWEEP))
    module, _ = load_experiment_file(str(path))
    base = module.get_config()
    outcome, compilations = run_sweep(str(path), base, tmp_path / "vectorized")
    assert set(outcome.values()) == {"finished"} and compilations == 1  # the weights are arrays of one program
    names = [sweep.run_name(v) for v in module.get_sweep()]
    initial = state_tree(Experiment(sweep.apply(base, module.get_sweep()[0]), load_train_data=False).init_state())
    for v, n in zip(module.get_sweep(), names, strict=True):
        train(sweep.apply(base, v), str(tmp_path / "alone" / n))
        diff, where = run_difference(tmp_path / "vectorized" / n, tmp_path / "alone" / n, initial, step=4)
        print(f"{n}: vectorized vs alone {diff:.2e} ({where})")
        assert diff < RUN_TOLERANCE, (n, diff, where)
    diff, where = run_difference(*(tmp_path / "vectorized" / n for n in names), initial, step=4)
    print(f"control, class_weight_fake 0.5 vs 4: {diff:.2e} ({where})")
    assert diff > 10 * RUN_TOLERANCE
