"""The run report (gan_jax/report.py): curves from metrics.jsonl, the progress GIF from the grids, and a
self-contained report.html."""

import json
import re

import numpy as np
from PIL import Image

from gan_jax import grids, report
from gan_jax.config import base_config
from gan_jax.experiment import write_workdir_config


def _fake_run(workdir, steps=(100, 200, 300, 400)):
    (workdir / "samples").mkdir(parents=True)
    cfg = base_config()
    write_workdir_config(str(workdir), cfg)
    rng = np.random.default_rng(0)
    with open(workdir / "metrics.jsonl", "w") as f:
        for s in steps:
            f.write(json.dumps({"step": s, "d_loss": 1.0 + 0.1 * rng.random(), "g_loss": 0.8, "d_real": 0.6,
                                "d_fake": 0.4, "lr_generator": 2e-4, "seconds_per_step": 0.1}) + "\n")
            f.write(json.dumps({"step": s, "event": "checkpoint", "checkpoint_blocking_s": 0.3}) + "\n")
            grids.save_grid(str(workdir / "samples" / f"step_{s:07d}.png"),
                                rng.integers(0, 256, (4, 8, 8, 1), dtype=np.uint8), columns=2)
        f.write(json.dumps({"step": 400, "event": "eval", "classifier_space/fid": 12.5,
                            "classifier_space/classifier_sha256": "ab" * 32}) + "\n")
    return cfg


def test_smoothing_is_tensorboard_s_debiased_average():
    values = np.array([1.0, 3.0, 2.0, 5.0])
    expected, avg = [], 0.0
    for i, v in enumerate(values):
        avg = 0.6 * avg + 0.4 * v
        expected.append(avg / (1 - 0.6 ** (i + 1)))
    np.testing.assert_allclose(report.smooth(values, 0.6), expected)
    assert report.smooth(values, 0.6)[0] == 1.0  # debiased: the first value is itself


def test_series_keep_numeric_metrics_and_drop_bookkeeping(tmp_path):
    _fake_run(tmp_path)
    curves = report.series(report.read_metrics(str(tmp_path)))
    assert set(curves) == {"d_loss", "g_loss", "d_real", "d_fake", "lr_generator", "classifier_space/fid"}
    np.testing.assert_array_equal(curves["g_loss"][0], [100, 200, 300, 400])
    panels = dict(report._panels(curves))
    assert panels["losses"] == ["d_loss", "g_loss"] and panels["classifier_space: fid"] == ["classifier_space/fid"]


def test_an_evaluators_fractions_share_a_panel_other_scales_get_their_own_and_counts_none():
    steps = np.array([1000, 2000, 3000])
    curves = {f"classifier_space/{k}": (steps, np.array(v, np.float64)) for k, v in {
        "fid": [56.6, 32.7, 34.5], "kid": [1.17, 0.45, 0.50], "kid_std": [0.03, 0.03, 0.02],
        "precision": [0.91, 0.79, 0.84], "recall": [0.0, 0.075, 0.07], "samples": [2000, 2000, 2000]}.items()}
    curves["modes/modes_captured"] = (steps, np.array([6.0, 8.0, 8.0]))  # a count that moves is a curve
    panels = dict(report._panels(curves))
    assert panels == {"classifier_space": ["classifier_space/precision", "classifier_space/recall"],
                      "classifier_space: fid": ["classifier_space/fid"],
                      "classifier_space: kid": ["classifier_space/kid"],
                      "modes: modes_captured": ["modes/modes_captured"]}


def test_curves_gif_and_a_self_contained_report(tmp_path):
    _fake_run(tmp_path)
    path = report.write_report(str(tmp_path))
    assert Image.open(tmp_path / "curves.png").size[0] > 0
    gif = Image.open(tmp_path / "samples" / "progress.gif")
    assert gif.n_frames == 4
    page = open(path).read()
    sources = re.findall(r'<img[^>]*src="([^"]*)"', page)
    assert len(sources) == 1 + 3 and all(s.startswith("data:image/png;base64,") for s in sources)  # curves + 3 grids
    assert "step 100" in page and "step 300" in page and "step 400" in page and "step 200" not in page
    assert "classifier_space/fid" in page and "ab" * 32 in page  # the evaluation and its provenance
    assert "&quot;non_saturating&quot;" in page  # the config (HTML-escaped)
    assert "http" not in page.replace("http-equiv", "")  # nothing fetched from elsewhere
