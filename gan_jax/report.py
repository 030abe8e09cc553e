"""A run's report, read instead of metrics.jsonl: DIR/curves.png (every logged scalar against the step,
smoothed, the raw values faint), DIR/samples/progress.gif (the fixed-latent grids over training) and
`launch.py --mode=report` -> DIR/report.html (config, curves, first/middle/last grids, the pictures of
DIR/pictures/ (PICTURES; a 2-D mixture's progress.gif), evaluation results with their provenance), one
self-contained file (images inlined as data: URIs) that opens offline. Training refreshes curves.png and
progress.gif with every sample grid."""

import base64
import glob
import html
import json
import math
import os

import numpy as np

from gan_jax import disk
from gan_jax.writers import read_metrics

# Panels of curves.png: (title, does a metric name belong to it). A metric goes to the first that takes
# it; evaluator metrics ('name/metric') go to their evaluator's panels (_evaluator_panel).
PANELS = (
    ("losses", lambda k: k.endswith("loss") or k in ("reconstruction", "kl", "neg_elbo", "iwae_bound",
                                                      "feature_reconstruction")),
    ("discriminator outputs", lambda k: k.startswith(("d_real", "d_fake"))),
    ("penalties", lambda k: k.startswith("penalty_")),
    ("learning rates", lambda k: k == "lr" or k.startswith("lr_")),
    ("accuracy", lambda k: k == "accuracy"),
)
SKIPPED = {"step", "event", "seconds_per_step", "checkpoint_blocking_s", "finite"}

PICTURES_DIR = "pictures"
# The run's pictures, DIR/pictures/NAME -> their heading, in report.html's order: written by
# `launch.py --mode=report` (the networks': gan_jax/pictures.py; the class histogram: write_report) and by
# the memorization evaluator (gan_jax/evaluate/memorization.py). One that does not apply to the run is absent.
PICTURES = {
    "interpolations.png": "Latent interpolations (spherical, between fixed latent pairs; one pair a row)",
    "reconstructions.png": "Reconstructions (test image | its reconstruction from the posterior mean)",
    "manifold.png": "Decoded latent manifold (the 2-D latent grid at normal quantiles)",
    "class_histogram.png": "Class histogram of the evaluation samples",
    "memorization_neighbours_features.png": "Memorization: the samples nearest to the training set, in "
                                            "classifier space, each with its 3 nearest training images",
    "memorization_neighbours_pixels.png": "Memorization: the samples nearest to the training set, in pixel "
                                          "space, each with its 3 nearest training images",
    "memorization_distances.png": "Memorization: sample-to-train against test-to-train nearest distances",
}


def series(records: list[dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """metric name -> (steps, values) of every finite numeric scalar in the records."""
    out: dict[str, list] = {}
    for r in records:
        for k, v in r.items():
            if k in SKIPPED or isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                continue
            out.setdefault(k, []).append((r["step"], v))
    return {k: (np.array([s for s, _ in v]), np.array([x for _, x in v], np.float64)) for k, v in out.items()}


def smooth(values: np.ndarray, weight: float = 0.9) -> np.ndarray:
    """TensorBoard's smoothing: a debiased exponential moving average."""
    out, avg = np.empty_like(values), 0.0
    for i, v in enumerate(values):
        avg = weight * avg + (1 - weight) * v
        out[i] = avg / (1 - weight ** (i + 1))
    return out


def _evaluator_panel(name: str, values: np.ndarray) -> str | None:
    """The panel of evaluator metric `name` ('classifier_space/fid'): the evaluator's own for metrics in [0, 1]
    (fractions share a scale), one of its own for any other ('classifier_space: fid'), so that an FID of 60
    does not flatten a precision of 0.8; None for what has no curve to show: a spread ('kid_std') or a
    count that never changes ('samples')."""
    evaluator, metric = name.split("/", 1)
    counts = np.all(values == np.round(values)) and values.min() > 1
    if metric.endswith("_std") or (counts and len(values) > 1 and np.all(values == values[0])):
        return None
    return evaluator if values.min() >= 0 and values.max() <= 1 else f"{evaluator}: {metric}"


def _panels(curves: dict) -> list[tuple[str, list[str]]]:
    panels: dict[str, list[str]] = {}
    for name in sorted(curves):
        if "/" in name:
            title = _evaluator_panel(name, curves[name][1])
            if title is None:
                continue
        else:
            title = next((t for t, takes in PANELS if takes(name)), "other")
        panels.setdefault(title, []).append(name)
    order = [t for t, _ in PANELS] + ["other"]
    return sorted(panels.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0]))


def pyplot():
    """matplotlib.pyplot on the Agg backend: figures are files, and no display is needed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str, dpi: int = 80) -> str:
    """Saves `fig` as PNG at `path` atomically (a reader never sees half an image) and closes it."""
    try:
        with disk.replacing(path, ".png") as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        pyplot().close(fig)
    return path


def write_curves(workdir: str) -> str | None:
    """DIR/curves.png from metrics.jsonl (atomically); None if nothing is logged yet."""
    plt = pyplot()
    curves = series(read_metrics(workdir))
    if not curves:
        return None
    panels = _panels(curves)
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.2 * rows), squeeze=False)
    for ax, (title, names) in zip(axes.flat, panels, strict=False):
        for i, name in enumerate(names):
            steps, values = curves[name]
            colour = f"C{i % 10}"
            label = name.split("/", 1)[-1]
            # Evaluations are few, and a schedule has no noise (smoothing would only draw it late): as they are.
            if len(values) > 2 and "/" not in name and title != "learning rates":
                ax.plot(steps, values, color=colour, alpha=0.25, linewidth=0.8)
                ax.plot(steps, smooth(values), color=colour, linewidth=1.5, label=label)
            else:
                ax.plot(steps, values, "o-", color=colour, linewidth=1.5, markersize=3, label=label)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        if title == "learning rates":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, os.path.join(workdir, "curves.png"))


def sample_grids(workdir: str) -> list[tuple[int, str]]:
    """(step, path) of the run's sample grids samples/step_XXXXXXX.png, by step."""
    paths = glob.glob(os.path.join(workdir, "samples", "step_*.png"))
    return sorted((int(os.path.basename(p)[5:12]), p) for p in paths)


def write_progress_gif(workdir: str, frame_ms: int = 400) -> str | None:
    """DIR/samples/progress.gif: the grids in step order, the last held longer; None without grids."""
    from PIL import Image

    grids = sample_grids(workdir)
    if not grids:
        return None
    frames = [Image.open(p).convert("RGB") for _, p in grids]
    path = os.path.join(workdir, "samples", "progress.gif")
    durations = [frame_ms] * (len(frames) - 1) + [4 * frame_ms]
    with disk.replacing(path, ".gif") as tmp:
        frames[0].save(tmp, save_all=True, append_images=frames[1:], duration=durations, loop=0)
    return path


def refresh(workdir: str) -> None:
    """curves.png and progress.gif, as training goes. A plotting failure is reported on stderr and does
    not stop the run (the metrics and grids it draws from are written already)."""
    import sys

    from gan_jax import disk

    try:
        with disk.writing(f"writing curves.png/progress.gif in {workdir}"):
            write_curves(workdir)
            write_progress_gif(workdir)
    except disk.DiskFull:
        raise  # the run cannot go on writing either: it stops with one line
    except Exception as e:  # noqa: BLE001 - a figure must never cost a training run
        print(f"report: could not refresh curves.png/progress.gif in {workdir}: {type(e).__name__}: {e}",
              file=sys.stderr, flush=True)


def picture_path(workdir: str, name: str) -> str:
    """DIR/pictures/NAME (the folder made) for a NAME of PICTURES."""
    if name not in PICTURES:
        raise ValueError(f"picture {name!r} is not one of report.PICTURES: {', '.join(PICTURES)}")
    os.makedirs(os.path.join(workdir, PICTURES_DIR), exist_ok=True)
    return os.path.join(workdir, PICTURES_DIR, name)


def _data_uri(path: str, mime: str) -> str:
    with open(path, "rb") as f:
        return f"data:{mime};base64,{base64.b64encode(f.read()).decode()}"


def evaluations(workdir: str, records: list[dict]) -> list[dict]:
    """Evaluation results: eval_step_*.json files (--mode=eval; nested, {evaluator: {metric: value}})
    and the loop's eval events in `records` (flat, {'evaluator/metric': value}), each with its 'source'."""
    out = []
    for path in sorted(glob.glob(os.path.join(workdir, "eval_step_*.json"))):
        with open(path) as f:
            out.append({"source": os.path.basename(path), **json.load(f)})
    for r in records:
        if r.get("event") == "eval":
            out.append({"source": "metrics.jsonl (during training)",
                        **{k: v for k, v in r.items() if k != "event"}})
    return out


def newest_class_histograms(results: list[dict]) -> tuple[int, dict[str, list[int]]] | None:
    """(step, {evaluator: class histogram}) of the newest of `results` (`evaluations`) that has a class
    histogram, or None."""
    from gan_jax.experiment import flatten

    newest = None
    for record in results:
        flat = flatten({k: v for k, v in record.items() if k not in ("source", "step")}, sep="/")
        histograms = {k.rsplit("/", 1)[0]: v for k, v in flat.items()
                      if k.endswith("/class_histogram") and isinstance(v, list) and v}
        if histograms and (newest is None or record.get("step", 0) >= newest[0]):
            newest = (record.get("step", 0), histograms)
    return newest


def write_class_histogram(workdir: str, results: list[dict]) -> str | None:
    """DIR/pictures/class_histogram.png: bars of the newest class histograms of `results` (one panel an
    evaluator), the uniform count dashed; None without an evaluation that has one."""
    newest = newest_class_histograms(results)
    if newest is None:
        return None
    step, histograms = newest
    plt = pyplot()
    fig, axes = plt.subplots(1, len(histograms), figsize=(6 * len(histograms), 3.2), squeeze=False)
    for ax, (name, counts) in zip(axes.flat, histograms.items(), strict=True):
        counts = np.asarray(counts)
        ax.bar(np.arange(len(counts)), counts, color="C0", width=0.8)
        ax.axhline(counts.sum() / len(counts), color="k", linestyle="--", linewidth=1, label="uniform")
        ax.set_title(f"{name}, step {step}: {counts.sum()} samples by predicted class", fontsize=9)
        ax.set_xlabel("class")
        ax.set_ylabel("samples")
        if len(counts) <= 20:
            ax.set_xticks(np.arange(len(counts)))
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, picture_path(workdir, "class_histogram.png"))


def _table(record: dict) -> str:
    """One evaluation as a two-column table (metric, value); provenance rows (classifier, its hash,
    sample counts) are part of it."""
    rows = []
    from gan_jax.experiment import flatten

    for k, v in flatten(record, sep="/").items():
        text = f"{v:.6g}" if isinstance(v, float) else json.dumps(v) if isinstance(v, list) else str(v)
        rows.append(f"<tr><td>{html.escape(k)}</td><td>{html.escape(text)}</td></tr>")
    return f"<table>{''.join(rows)}</table>"


def _pictures(workdir: str, cfg) -> list[str]:
    """The report's section of the pictures the run has, each with its caption: a 2-D mixture's
    progress.gif (its scatters over training) and each of PICTURES present in DIR/pictures/."""
    from gan_jax import data

    figures = []
    gif = os.path.join(workdir, "samples", "progress.gif")
    if data.get_dataset(cfg.data.name, cfg.data.source).mixture is not None and os.path.exists(gif):
        steps = [s for s, _ in sample_grids(workdir)]
        figures.append((gif, "image/gif", f"Samples over training: generated (red) over real (grey) points, "
                                          f"steps {steps[0]} to {steps[-1]}" if steps else "Samples over training"))
    figures += [(os.path.join(workdir, PICTURES_DIR, name), "image/png", heading) for name, heading in PICTURES.items()]
    cells = "".join(f'<figure><img alt="{html.escape(os.path.basename(path))}" src="{_data_uri(path, mime)}">'
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>"
                    for path, mime, caption in figures if os.path.exists(path))
    return [f'<h2>Pictures</h2><div class="grids">{cells}</div>'] if cells else []


def write_report(workdir: str) -> str:
    """DIR/report.html (atomically), refreshing curves.png, progress.gif and pictures/class_histogram.png
    first; returns its path."""
    from gan_jax.experiment import load_workdir_config

    cfg = load_workdir_config(workdir)
    records = read_metrics(workdir)
    curves = write_curves(workdir)
    write_progress_gif(workdir)
    grids = sample_grids(workdir)
    shown = [grids[i] for i in sorted({0, len(grids) // 2, len(grids) - 1})] if grids else []
    last = next((r for r in reversed(records) if "event" not in r), {})
    e = html.escape
    parts = [f"<h1>{e(os.path.basename(os.path.abspath(workdir)))}</h1>",
             f"<p>objective <b>{e(cfg.objective)}</b>, data <b>{e(cfg.data.name)}</b>, model <b>{e(cfg.model.name)}"
             f"</b>, {last.get('step', 0)} of {cfg.train.steps} steps logged.</p>"]
    if curves:
        parts.append(f'<h2>Curves</h2><img alt="curves" src="{_data_uri(curves, "image/png")}">')
    if shown:
        cells = "".join(f'<figure><img alt="step {s}" src="{_data_uri(p, "image/png")}"><figcaption>step {s}'
                        f"</figcaption></figure>" for s, p in shown)
        parts.append(f'<h2>Samples (fixed latents)</h2><div class="grids">{cells}</div>')
    results = evaluations(workdir, records)
    write_class_histogram(workdir, results)
    parts.extend(_pictures(workdir, cfg))
    if results:
        parts.append("<h2>Evaluations</h2>" + "".join(_table(r) for r in results))
    parts.append(f"<h2>Config</h2><pre>{e(json.dumps(json.loads(cfg.to_json()), indent=1))}</pre>")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(os.path.basename(workdir))} report</title>"
            "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}img{max-width:100%}"
            ".grids{display:flex;gap:1em;flex-wrap:wrap;align-items:flex-start}"
            "figcaption{max-width:30em;font-size:13px}pre{background:#f4f4f4;padding:.5em;font-size:12px;"
            "overflow:auto;max-height:30em}table{border-collapse:collapse;margin:1em 0;font-size:13px}"
            "td{border:1px solid #ddd;padding:2px 8px}</style></head><body>" + "\n".join(parts) + "</body></html>")
    path = os.path.join(workdir, "report.html")
    return disk.write_text(path, page)
