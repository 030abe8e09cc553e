"""Sweep results (gan_jax/results.py) from a hand-written sweep folder: the statistics against numpy
(float64) and scipy.stats.t.interval, the run flags, the published values, the plots."""

import csv
import json
import pathlib

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from gan_jax import results, sweep
from gan_jax.errors import UserError

REPO = pathlib.Path(__file__).resolve().parents[1]

STEPS = 4000
SOURCE = "Lin et al. 2018, Table 1"
PUBLISHED = {"GAN": {"modes/modes_captured": [6.3, 0.5], "modes/high_quality_fraction": 0.98,
                     "modes/reverse_kl": None},
             "PacGAN2": {"modes/modes_captured": 7.9}}
METRICS = ["modes/modes_captured", "modes/high_quality_fraction", "modes/reverse_kl"]


def _eval(step, captured, quality, kl):
    return {"step": step, "event": "eval", "modes/samples": 2500, "modes/modes_captured": captured,
            "modes/high_quality_fraction": quality, "modes/reverse_kl": kl, "modes/num_modes": 8}


def _run(sweep_dir, name, records, steps=STEPS):
    folder = sweep_dir / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"seed": 0, "train": {"steps": steps}}))
    with open(folder / "metrics.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def _train(step):
    return {"step": step, "d_loss": 1.3, "g_loss": 0.7}


# Final (captured, quality, kl) per counted run; the curves' step-2000 values are these minus 1, 0.1, -0.1.
FINALS = {"GAN,seed=0": (6, 0.61, 0.52), "GAN,seed=1": (5, 0.55, 0.71), "GAN,seed=4": (7, 0.72, 0.33),
          "PacGAN2,seed=0": (8, 0.83, 0.12), "PacGAN2,seed=1": (7, 0.79, None), "PacGAN3,seed=0": (8, 0.9, 0.05)}


@pytest.fixture
def sweep_dir(tmp_path):
    variants = sweep.product(sweep.axis("model.pack", [1, 2, 3], names=["GAN", "PacGAN2", "PacGAN3"]),
                             sweep.seeds(5))
    keep = set(FINALS) | {"GAN,seed=2", "GAN,seed=3", "PacGAN2,seed=2"}
    variants = [v for v in variants if sweep.run_name(v) in keep]
    sweep.write_sweep_file(str(tmp_path), "experiments/pacgan.py:ring,budget=0.01", variants, PUBLISHED, SOURCE)
    for name, (c, q, k) in FINALS.items():
        early = _eval(2000, c - 1, q - 0.1, None if k is None else k + 0.1)
        records = [_train(2000), early, _train(STEPS), _eval(STEPS, c, q, k)]
        if name == "GAN,seed=1":  # preempted after a first evaluation of step 4000, resumed: the later line wins
            records = [_train(2000), early, _eval(STEPS, 0, 0.0, 9.0), _train(STEPS), _eval(STEPS, c, q, k)]
        _run(tmp_path, name, records)
    _run(tmp_path, "GAN,seed=2", [_train(2000), _eval(2000, 1, 0.01, 3.0),
                                  {"step": 2500, "event": "diverged", "nonfinite": "d_loss"}])
    # GAN,seed=3: missing (no folder). PacGAN2,seed=2: unfinished (an evaluation at 2000 only).
    _run(tmp_path, "PacGAN2,seed=2", [_train(2000), _eval(2000, 2, 0.2, 1.0)])
    return tmp_path


def _reference(values):
    """n, mean, std (ddof=1), the 95% t interval, from numpy float64 and scipy.stats.t.interval."""
    x = np.array([v for v in values if v is not None], np.float64)
    if len(x) < 2:
        return len(x), x.mean(), None, None, None
    low, high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    return len(x), x.mean(), x.std(ddof=1), low, high


def _csv(sweep_dir):
    with open(sweep_dir / "results.csv") as f:
        return {(r["setting"], r["metric"]): r for r in csv.DictReader(f)}


def test_csv_statistics_match_numpy_and_scipy(sweep_dir):
    results.write_results(str(sweep_dir))
    rows = _csv(sweep_dir)
    assert set(rows) == {(s, m) for s in ("GAN", "PacGAN2", "PacGAN3") for m in METRICS}
    for (setting, metric), row in rows.items():
        index = METRICS.index(metric)
        values = [v[index] for name, v in FINALS.items() if name.startswith(setting + ",")]
        n, mean, std, low, high = _reference(values)
        assert int(row["n"]) == n
        assert float(row["mean"]) == pytest.approx(mean, rel=1e-12)
        for key, expected in (("std", std), ("ci95_low", low), ("ci95_high", high)):
            if expected is None:
                assert row[key] == "", (setting, metric, key)  # n = 1: undefined
            else:
                assert float(row[key]) == pytest.approx(expected, rel=1e-12)
    # The resumed run's later evaluation of step 4000 counts, not the first (0 modes).
    assert float(rows["GAN", "modes/modes_captured"]["mean"]) == pytest.approx(6.0)
    assert rows["PacGAN3", "modes/modes_captured"]["n"] == "1"


def test_flags_published_values_and_bookkeeping_keys(sweep_dir):
    results.write_results(str(sweep_dir))
    rows = _csv(sweep_dir)
    gan, pac2 = rows["GAN", "modes/modes_captured"], rows["PacGAN2", "modes/modes_captured"]
    assert (gan["runs_diverged"], gan["runs_missing"], gan["runs_unfinished"]) == ("1", "1", "0")
    assert (pac2["runs_diverged"], pac2["runs_missing"], pac2["runs_unfinished"]) == ("0", "0", "1")
    assert (float(gan["published_mean"]), float(gan["published_se"])) == (6.3, 0.5)
    assert float(rows["GAN", "modes/high_quality_fraction"]["published_mean"]) == 0.98
    assert rows["GAN", "modes/high_quality_fraction"]["published_se"] == ""
    assert rows["GAN", "modes/reverse_kl"]["published_mean"] == ""  # null: not published
    assert rows["PacGAN2", "modes/reverse_kl"]["n"] == "1"  # seed 1's null is not counted
    md = (sweep_dir / "results.md").read_text()
    assert "experiments/pacgan.py:ring,budget=0.01" in md and "train.steps = 4000 in every run" in md
    assert "modes/samples = 2500" in md and "modes/num_modes = 8" in md  # constant: above the table only
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert "modes/samples" not in table[0] and all(m in table[0] for m in METRICS)
    settings = [line.split("|")[1].strip() for line in table[2:]]
    assert settings == ["GAN", f"↳ published ({SOURCE})", "PacGAN2", f"↳ published ({SOURCE})", "PacGAN3"]
    assert "6.3 (s.e. 0.5)" in table[3] and "0.98" in table[3] and "7.9" in table[5]
    assert "3 of 5 finished: 1 diverged, 1 missing" in table[2]
    assert "GAN,seed=2: diverged at step 2500" in md and "GAN,seed=3: missing" in md
    assert "PacGAN2,seed=2: unfinished (last evaluation at step 2000 of 4000)" in md
    assert "PacGAN2,seed=1: modes/reverse_kl is null (not counted)" in md
    assert "(std –, n=1)" in table[6]  # PacGAN3: one seed
    assert "t_{0.975, n-1}" in md.splitlines()[-1]


def test_one_png_per_metric(sweep_dir):
    paths = results.write_results(str(sweep_dir))
    pngs = sorted(p for p in paths if p.endswith(".png"))
    assert pngs == sorted(str(sweep_dir / f"results_{m.replace('/', '_')}.png") for m in METRICS)
    for p in pngs:
        with Image.open(p) as image:
            image.verify()
            assert image.format == "PNG"
    assert sorted(p.name for p in sweep_dir.glob("results*")) == sorted(
        ["results.md", "results.csv"] + [f"results_{m.replace('/', '_')}.png" for m in METRICS])


def test_curve_is_the_mean_over_runs_that_did_not_diverge(sweep_dir):
    record = sweep.read_sweep_file(str(sweep_dir))
    runs = [results.read_run(str(sweep_dir), e) for e in record["runs"]]
    gan = [r for r in runs if r.setting == "GAN"]
    steps, summaries = results.curve(gan, "modes/modes_captured")
    np.testing.assert_array_equal(steps, [2000, 4000])
    assert summaries[0].mean == pytest.approx(np.mean([5, 4, 6]))  # the diverged run's 1 is left out
    pac2 = [r for r in runs if r.setting == "PacGAN2"]
    steps, summaries = results.curve(pac2, "modes/modes_captured")
    assert [s.n for s in summaries] == [3, 2]  # the unfinished run counts where it got to


def test_runs_with_different_steps_are_named(tmp_path):
    variants = sweep.seeds(2)
    sweep.write_sweep_file(str(tmp_path), "experiments/gan_mixture.py:ring", variants)
    _run(tmp_path, "seed=0", [_eval(100, 8, 0.9, 0.1)], steps=100)
    _run(tmp_path, "seed=1", [_eval(200, 7, 0.8, 0.2)], steps=200)
    results.write_results(str(tmp_path))
    md = (tmp_path / "results.md").read_text()
    assert "train.steps differs between runs" in md and "100 (1 runs: seed=0)" in md
    assert "| default | 2 of 2 finished |" in md


def test_a_sweep_of_an_experiment_file_since_renamed_still_reports(tmp_path):
    """sweep.json keeps the spec as typed ('experiments/pacgan_ring.py', now experiments/pacgan.py:ring)
    and the published rows: the report reads those, never the experiment file."""
    assert not (REPO / "experiments" / "pacgan_ring.py").exists()
    variants = sweep.product(sweep.axis("model.pack", [1], names=["GAN"]), sweep.seeds(1))
    sweep.write_sweep_file(str(tmp_path), "experiments/pacgan_ring.py:budget=0.01", variants, PUBLISHED, SOURCE)
    _run(tmp_path, "GAN,seed=0", [_eval(STEPS, 6, 0.9, 0.4)])
    results.write_results(str(tmp_path))
    md = (tmp_path / "results.md").read_text()
    assert "experiments/pacgan_ring.py:budget=0.01" in md and "6.3 (s.e. 0.5)" in md


def test_a_folder_without_sweep_json_is_one_line(tmp_path):
    with pytest.raises(UserError, match="no sweep") as e:
        results.write_results(str(tmp_path))
    assert "\n" not in str(e.value)


def test_one_finished_run_tabulates_everything_and_a_setting_without_runs_is_empty(tmp_path):
    variants = sweep.product(sweep.axis("model.pack", [1, 2], names=["GAN", "PacGAN2"]), sweep.seeds(1))
    sweep.write_sweep_file(str(tmp_path), "experiments/gan_mixture.py:ring", variants)
    _run(tmp_path, "GAN,seed=0", [_eval(STEPS, 8, 0.9, 0.1)])  # PacGAN2,seed=0: missing
    paths = results.write_results(str(tmp_path))
    rows = _csv(tmp_path)
    # One finished run: nothing is known to be constant across runs, so the counts are columns too.
    assert {m for _, m in rows} == {"modes/samples", "modes/num_modes", *METRICS}
    assert len([p for p in paths if p.endswith(".png")]) == 5
    row = rows["PacGAN2", "modes/modes_captured"]
    assert (row["n"], row["mean"], row["std"], row["runs_missing"]) == ("0", "", "", "1")
    md = (tmp_path / "results.md").read_text()
    assert "| PacGAN2 | 0 of 1 finished: 1 missing | – (n=0) |" in md
    assert "Same in every finished run" not in md
