"""End to end through launch.py: every experiment's smoke variant trains, resumes, samples and
evaluates; bad input ends with one line on stderr, exit status 2, and nothing written."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from conftest import load_experiment, process_env, require_data
from PIL import Image

from gan_jax.evaluate.evaluators import EVALUATORS
from gan_jax.objectives import OBJECTIVES

REPO = pathlib.Path(__file__).resolve().parents[1]
FILES = sorted(p.stem for p in (REPO / "experiments").glob("*.py"))


def variants(file: str) -> tuple[str, ...]:
    """The VARIANTS experiments/FILE.py declares (read as launch.py reads them, without running the file)."""
    import ast

    tree = ast.parse((REPO / "experiments" / f"{file}.py").read_text())
    return next((tuple(ast.literal_eval(n.value)) for n in tree.body if isinstance(n, ast.Assign)
                 and any(getattr(t, "id", None) == "VARIANTS" for t in n.targets)), ())


# Every experiment: a file, or FILE:WORD for each setup a file of several declares ('pacgan:grid').
EXPERIMENTS = [f"{file}:{word}" if word else file for file in FILES
               for word in [w for w in variants(file) if w != "smoke"] or [None]]


def smoke(name: str) -> str:
    """Experiment NAME's smoke variant as launch.py's --config: 'pacgan:grid' -> 'experiments/pacgan.py:grid,smoke'."""
    file, _, word = name.partition(":")
    return f"experiments/{file}.py:{word + ',' if word else ''}smoke"


def launch(*args, check=True):
    out = subprocess.run([sys.executable, str(REPO / "launch.py"), *args], cwd=REPO, env=process_env(),
                         capture_output=True, text=True, timeout=600)
    if check and out.returncode != 0:
        raise AssertionError(f"launch.py {' '.join(args)} exited {out.returncode}:\n{out.stdout[-3000:]}\n"
                             f"{out.stderr[-3000:]}")
    return out


def metrics(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


RESUMED = ["quickstart", "gan_mixture:ring", "vae_mnist"]  # trained, resumed and sampled in test_resume_and_sample
# Smoke variants that other files train to the end through launch.py or its loop, checking more than
# check_trained does: not trained a second time here.
TRAINED_ELSEWHERE = {"cdcgan_mnist": "test_conditional_metrics.py, test_conditional_experiments.py",
                     "acgan_mnist": "test_conditional_experiments.py",
                     "classifier:mnist": "test_classifier.py",
                     "pacgan:ring": "test_sweep_trains_every_variant_reports_and_runs_one_variant_alone, below"}


def check_trained(workdir):
    records = metrics(workdir)
    assert records and all(np.isfinite(v) for r in records for v in r.values() if isinstance(v, float))
    config = json.loads((workdir / "config.json").read_text())
    assert config["data"]["name"]
    last = records[-1]["step"]
    if OBJECTIVES[config["objective"]].generates:
        assert (workdir / "samples" / f"step_{last:07d}.png").exists()
    else:
        assert not (workdir / "samples").exists()
    assert (workdir / "checkpoints" / str(last)).is_dir()
    assert any((workdir / "tensorboard").iterdir())


def needs_data(name: str) -> bool:
    """Whether the experiment reads $GAN_JAX_DATA."""
    file, _, word = name.partition(":")
    return load_experiment(f"{file}:{word},smoke").data.source not in ("synthetic", "embedded")


@pytest.mark.parametrize("name", [e for e in EXPERIMENTS if e not in RESUMED and e not in TRAINED_ELSEWHERE])
def test_smoke_config_trains(name, tmp_path):
    if needs_data(name):
        require_data()
    workdir = tmp_path / name
    launch("--config", smoke(name), "--workdir", str(workdir))
    check_trained(workdir)


@pytest.mark.parametrize("name", RESUMED)
def test_resume_and_sample(name, tmp_path):
    if needs_data(name):
        require_data()
    workdir = tmp_path / name
    launch("--config", smoke(name), "--workdir", str(workdir))
    check_trained(workdir)
    steps_before = [r["step"] for r in metrics(workdir)]
    out = launch("--config", smoke(name), "--workdir", str(workdir), "--config.train.steps=8")
    assert "resumed from checkpoint at step 4" in out.stdout
    steps_after = [r["step"] for r in metrics(workdir)]
    assert steps_after[: len(steps_before)] == steps_before and steps_after[-1] == 8
    assert min(steps_after[len(steps_before):]) > 4  # nothing before the checkpoint was redone

    out = launch("--mode=sample", "--workdir", str(workdir), "--num_samples", "10", "--step", "4")
    with np.load(workdir / "samples.npz") as f:
        if name == "gan_mixture:ring":
            assert f["points"].shape == (10, 2) and f["points"].dtype == np.float32
            untruncated = f["points"]
        else:
            assert f["images"].shape == (10, 28, 28, 1) and f["images"].dtype == np.uint8
    assert Image.open(workdir / "samples_step_0000004.png").size[0] > 0
    if name == "vae_mnist":
        launch("--mode=eval", "--workdir", str(workdir))
        result = json.loads((workdir / "eval_step_0000008.json").read_text())["vae_likelihood"]
        assert 0 < result["test_neg_elbo_nats"] < 2000 and result["examples"] == 500 and result["iwae_k"] == 10
        # The importance-weighted bound is the tighter one (in expectation; 500 examples make it sure).
        assert 0 < result["test_nll_iwae_nats"] < result["test_neg_elbo_nats"]
        assert 0 <= result["active_units"] <= result["latent_dim"] == 4
    if name == "gan_mixture:ring":
        launch("--mode=eval", "--workdir", str(workdir))
        result = json.loads((workdir / "eval_step_0000008.json").read_text())["modes"]
        assert result["samples"] == 500 and result["num_modes"] == 8 and 0 <= result["modes_captured"] <= 8
        assert 0 <= result["high_quality_fraction"] <= 1
        assert result["reverse_kl"] >= 0 if result["modes_captured"] else result["reverse_kl"] is None
        # The same evaluator ran during training (eval.every=2 in the smoke variant), with its step.
        during = [r for r in metrics(workdir) if r.get("event") == "eval"]
        assert [r["step"] for r in during] == [2, 4, 6, 8]
        assert during[-1]["modes/modes_captured"] == result["modes_captured"]  # same key (seed, step)
        # --truncation is eval.truncation: other samples of the same keys, recorded as truncated.
        launch("--mode=sample", "--workdir", str(workdir), "--num_samples", "10", "--step", "4", "--truncation=0.5")
        with np.load(workdir / "samples.npz") as f:
            assert f["truncation"].tolist() == [0.5] and f["truncation_method"].tolist() == ["resample"]
            assert f["points"].shape == (10, 2) and not np.array_equal(f["points"], untruncated)


# Bad values that config.validate refuses, checked in this process; launch.py's handling of such an error
# (one line, exit 2, nothing written) is checked on one of them below, with the errors raised elsewhere.
VALIDATED = [
    ({"objective": "wgan"}, "objective='wgan' is not accepted; accepted: classifier, gan, vae, vaegan"),
    ({"data.prefetch": -1}, "data.prefetch=-1 is not accepted; accepted: >= 0"),
    ({"train.steps": -3}, "train.steps=-3 is not accepted; accepted: in (0, 1073741824]"),
    ({"seed": -1}, "seed=-1 is not accepted; accepted: >= 0"),
    ({"optimizer.learning_rate": float("nan")}, "optimizer.learning_rate=nan is not accepted; accepted: a finite"),
    ({"optimizer.learning_rate": float("inf")}, "optimizer.learning_rate=inf is not accepted"),
    ({"optimizer.b1": 1.0}, "optimizer.b1=1.0 is not accepted; accepted: in [0, 1)"),
    ({"optimizer.b2": -0.1}, "optimizer.b2=-0.1 is not accepted; accepted: in [0, 1)"),
    ({"loss.beta": float("-inf")}, "loss.beta=-inf is not accepted"),
    ({"train.update_rule": "simultaneous", "train.n_critic": 2},
     "train.n_critic=2 is not accepted with train.update_rule='simultaneous'"),
    ({"eval.truncation": -1.0}, "eval.truncation=-1.0 is not accepted; accepted: >= 0"),
    ({"eval.truncation_method": "cut"}, "eval.truncation_method='cut' is not accepted; accepted: resample, clip"),
    ({"loss.penalty_final_scale": -0.5}, "loss.penalty_final_scale=-0.5 is not accepted; accepted: >= 0"),
]


@pytest.mark.parametrize("fields,expected", VALIDATED)
def test_bad_values_are_refused_in_one_line_by_validate(fields, expected):
    from gan_jax.config import validate
    from gan_jax.errors import ConfigError

    c = load_experiment("quickstart:smoke")
    for field, value in fields.items():
        *sections, name = field.split(".")
        node = c
        for section in sections:
            node = node[section]
        node[name] = value
    with pytest.raises(ConfigError) as error:
        validate(c)
    assert expected in str(error.value) and "\n" not in str(error.value), str(error.value)


@pytest.mark.parametrize("args,expected", [
    (["--config.data.batch_size=0"], "data.batch_size=0 is not accepted; accepted: > 0"),  # from validate
    (["--config.loss.name=relativistic_average", "--config.parallel.mode=pmap"],
     "loss.name='relativistic_average' averages over the whole batch inside the loss"),
    (["--config.model.name=resnet"], "model.name='resnet' is unknown; accepted:"),
    (["--config.loss.name=hinge2"], "loss.name='hinge2' is unknown for a GAN; accepted:"),
    (["--config.data.name=imagenet"], "data.name='imagenet' is unknown"),
    (["--config.model.latent_dim=1000000000"], "GiB per device but"),
    (["--config.eval.metrics=fid9"], "eval.metrics='fid9': 'fid9' is unknown; accepted: "
                                       + ", ".join(sorted(EVALUATORS))),  # the registry's names, not a copy
    (["--config.eval.metrics=modes"], "eval.metrics='modes': 'modes' needs a 2D mixture (ring8, grid25)"),
    (["--config.data.source=files", "--config.data.name=mnist", "--config.data.dir=/nonexistent"], "/nonexistent"),
    (["--config.train.stepz=5"], "--config.train.stepz: the config has no field 'stepz' (Did you mean \"steps\""),
    (["--config.modell.name=x"], "--config.modell.name: the config has no field 'modell'"),
    (["--truncation=0.5"], "--truncation=0.5 is not accepted with --mode=train; accepted: --truncation with "
                           "--mode=sample or --mode=eval"),
])
def test_bad_input_is_one_line_exit_2(args, expected, tmp_path):
    workdir = tmp_path / "run"
    out = launch("--config", "experiments/quickstart.py:smoke", "--workdir", str(workdir), *args, check=False)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], out.stderr
    assert not workdir.exists() or not any(workdir.iterdir())


@pytest.mark.parametrize("config,expected", [
    ("experiments/nonexistent.py", "--config=experiments/nonexistent.py: no such file"),
    ("experiments/quickstart.py:smok", "has no variant 'smok'; accepted: experiments/quickstart.py:smoke"),
    ("experiments/pacgan_grid.py:smoke", "is now part of experiments/pacgan.py; accepted: "
                                         "--config=experiments/pacgan.py:grid,smoke"),
    ("experiments/pacgan.py:rng", "has no variant 'rng'; accepted: experiments/pacgan.py:ring, "
                                  "experiments/pacgan.py:grid, experiments/pacgan.py:smoke"),
    ("BROKEN", "SyntaxError"),
    ("RAISES", "could not be loaded: ZeroDivisionError"),
])
def test_bad_config_file_is_one_line_exit_2(config, expected, tmp_path):
    if config == "BROKEN":
        config = str(tmp_path / "broken.py")
        pathlib.Path(config).write_text("def get_config(arg=None):\n    return {\n")
    if config == "RAISES":
        config = str(tmp_path / "raises.py")
        pathlib.Path(config).write_text("def get_config(arg=None):\n    return 1 / 0\n")
    workdir = tmp_path / "run"
    out = launch("--config", config, "--workdir", str(workdir), check=False)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and expected in lines[0], out.stderr
    assert not workdir.exists()


def test_every_experiment_declares_its_smoke_variant():
    for file in FILES:
        assert "smoke" in variants(file), file


def test_unwritable_workdir_and_foreign_run(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = launch("--config", "experiments/quickstart.py:smoke", "--workdir", str(blocker / "run"), check=False)
    assert out.returncode == 2 and "is not writable" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    workdir = tmp_path / "run"
    launch("--config", "experiments/gan_mixture.py:ring,smoke", "--workdir", str(workdir))
    before = (workdir / "metrics.jsonl").read_text()
    out = launch("--config", "experiments/quickstart.py:smoke", "--workdir", str(workdir), check=False)
    assert out.returncode == 2 and "holds a run with a different config" in out.stderr
    assert (workdir / "metrics.jsonl").read_text() == before


def test_sweep_trains_every_variant_reports_and_runs_one_variant_alone(tmp_path):
    sweep_dir = tmp_path / "pacgan"
    command = ("--config", "experiments/pacgan.py:ring,smoke", "--workdir", str(sweep_dir), "--sweep")
    out = launch(*command)
    assert "sweep: training 2 runs as one vectorized program: GAN,seed=0, GAN,seed=1" in out.stdout
    names = ["GAN,seed=0", "GAN,seed=1", "PacGAN2,seed=0", "PacGAN2,seed=1"]
    for name in names:
        check_trained(sweep_dir / name)
    table = (sweep_dir / "results.md").read_text()
    assert "| GAN | 2 of 2 finished |" in table and "published (Lin et al. 2018, Table 1)" in table
    (sweep_dir / "results.md").unlink()
    launch("--mode=report", "--workdir", str(sweep_dir))
    assert (sweep_dir / "results.md").read_text() == table
    out = launch(*command)  # again: every run is finished
    assert all(f"sweep: {name} finished" in out.stdout for name in names) and "training" not in out.stdout
    assert "sweep: 4 finished (of 4 runs here)" in out.stdout
    array = tmp_path / "array"
    launch(*command[:3], str(array), "--sweep_index=2")
    assert sorted(p.name for p in array.iterdir() if p.is_dir()) == ["PacGAN2,seed=0"]
    out = launch(*command[:3], str(array), "--sweep_index=4", check=False)
    assert out.returncode == 2 and out.stderr.strip() == \
        "error: --sweep_index=4 is not accepted; accepted: 0..3 (4 variants)"
    out = launch("--config", "experiments/pacgan.py:ring,smoke,budgt=1", "--workdir", str(tmp_path / "x"), check=False)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "'budgt'" in out.stderr
    assert not (tmp_path / "x").exists()
