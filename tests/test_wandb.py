"""Optional Weights & Biases logging (config.log.wandb), in wandb's offline mode: the same scalars as
metrics.jsonl, the sample grids, the run's config, one W&B run per workdir across resumes."""

import json

import pytest

wandb = pytest.importorskip("wandb", reason="pip install -e '.[wandb]' to test the W&B logging")

import gan_jax  # noqa: E402
from gan_jax import writers  # noqa: E402
from gan_jax.errors import ConfigError  # noqa: E402


def test_a_run_logs_its_scalars_grids_and_config_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    logged, started = [], []
    real_log, real_init = wandb.sdk.wandb_run.Run.log, wandb.init

    def recording_log(self, data, step=None, **kwargs):
        logged.append((step, dict(data)))
        return real_log(self, data, step=step, **kwargs)

    def recording_init(**kwargs):
        started.append(kwargs)
        return real_init(**kwargs)

    monkeypatch.setattr(wandb.sdk.wandb_run.Run, "log", recording_log)
    monkeypatch.setattr(wandb, "init", recording_init)
    cfg = gan_jax.load_config("gan_mixture:ring,smoke")
    cfg.data.batch_size = 96
    cfg.log.wandb, cfg.log.wandb_tags = True, "ring, smoke"
    workdir = tmp_path / "ring"
    gan_jax.train(cfg, workdir)
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    trained = [r for r in records if "d_loss" in r]
    by_step = {}
    for step, data in logged:
        by_step.setdefault(step, {}).update(data)
    for r in trained:
        assert by_step[r["step"]]["d_loss"] == pytest.approx(r["d_loss"])
    assert any(isinstance(v, wandb.Image) for data in by_step.values() for v in data.values())
    assert any("modes/modes_captured" in data for data in by_step.values())  # the evaluator's results
    first = started[0]
    assert first["tags"] == ["ring", "smoke"] and first["name"] == "ring" and first["config"]["seed"] == 0
    assert list((workdir / "wandb").glob("offline-run-*"))
    # Resuming logs into the same W&B run.
    cfg.train.steps = 6
    gan_jax.train(cfg, workdir)
    assert started[1]["id"] == first["id"] == (workdir / writers.WANDB_ID_FILE).read_text()


def test_without_the_package_it_is_one_line_before_anything_is_written(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb":
            raise ImportError("no module named wandb")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    cfg = gan_jax.load_config("gan_mixture:ring,smoke")
    cfg.log.wandb = True
    with pytest.raises(ConfigError, match=r"^log.wandb=True needs the wandb package; accepted: pip install"):
        writers.check_wandb(cfg)
