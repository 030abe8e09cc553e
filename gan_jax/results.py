"""A sweep's results (`write_results(sweep_dir)`), read from sweep.json and each run's config.json and
metrics.jsonl: results.md (a table of the final metrics per setting beside the published values),
results.csv (one row per setting and metric) and results_<metric>.png (each metric against the step, one
line per setting).

Which runs count: a run is *finished* when it has an evaluation at its train.steps (its final metrics are
that evaluation); *diverged* when its log holds a 'diverged' event and it did not finish; *missing*
without a run folder or config.json; *unfinished* otherwise (no evaluation yet, or only earlier ones).
Only finished runs enter the table; the curves take every run that did not diverge, at each step the runs
that reached it. A resumed run may log a step twice: the later line wins.

Which metrics: the numeric keys of the evaluation records ('evaluator/metric'). One whose final value is
the same number in every finished run (two or more) describes the protocol (sample counts, number of
modes) rather than a result: results.md lists it once above the table, and it gets no CSV row or plot,
unless the sweep has published values for it.

Statistics over the n finished runs of a setting with a finite value (null, NaN: not counted): the mean;
std, the sample standard deviation (ddof=1); the 95% confidence interval of the mean,
mean ± t_{0.975, n-1} * std / sqrt(n) (Student's t). With n = 1, std and the interval are undefined
('–' in results.md, empty in results.csv)."""

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from gan_jax import disk, report, sweep
from gan_jax.writers import read_metrics

CONFIDENCE = 0.95
FOOTNOTE = ("mean ± half-width of the 95% confidence interval of the mean over seeds, t_{0.975, n-1} · std / √n; "
            "std: sample standard deviation (ddof=1); n: finished runs with a finite value (n = 1: std and "
            "interval –); diverged, missing and unfinished runs are not counted; published: mean (s.e.) as reported.")
CSV_COLUMNS = ("setting", "metric", "n", "mean", "std", "ci95_low", "ci95_high", "published_mean",
               "published_se", "runs_diverged", "runs_missing", "runs_unfinished")
DASH = "–"


@dataclass
class Run:
    """One run of the sweep as its folder shows it."""

    name: str
    setting: str
    status: str  # finished, unfinished, diverged, missing
    steps: int | None = None  # train.steps of its config.json
    evals: dict[int, dict] = field(default_factory=dict)  # step -> evaluation record (the later line wins)
    note: str = ""  # why it is not counted, for results.md

    @property
    def final(self) -> dict:
        return self.evals[max(self.evals)] if self.status == "finished" else {}


@dataclass
class Summary:
    """Statistics of one setting's values of one metric; None where undefined."""

    n: int
    mean: float | None = None
    std: float | None = None
    low: float | None = None
    high: float | None = None


def summarize(values) -> Summary:
    """n, mean, std (ddof=1) and the Student-t 95% interval of the mean of the finite values."""
    x = np.array([v for v in values if _number(v)], np.float64)
    n = len(x)
    if n == 0:
        return Summary(0)
    if n == 1:
        return Summary(1, float(x[0]))
    mean, std = float(x.mean()), float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def read_run(sweep_dir: str, entry: dict) -> Run:
    """A run's status, train.steps and evaluations from its folder."""
    run = Run(entry["name"], entry["setting"], "missing", note="missing (no run folder)")
    folder = os.path.join(sweep_dir, entry["name"])
    if not os.path.exists(os.path.join(folder, "config.json")):
        if os.path.isdir(folder):
            run.note = "missing (no config.json: never started)"
        return run
    with open(os.path.join(folder, "config.json")) as f:
        run.steps = json.load(f).get("train", {}).get("steps")
    diverged_at = None
    for r in read_metrics(folder):
        if r.get("event") == "eval":
            run.evals[r["step"]] = r  # a resumed run's repeated step: the later line wins
        elif r.get("event") == "diverged":
            diverged_at = r["step"]
    last = max(run.evals, default=None)
    if last is not None and (run.steps is None or last >= run.steps):
        run.status, run.note = "finished", ""
    elif diverged_at is not None:
        run.status, run.note = "diverged", f"diverged at step {diverged_at}"
    else:
        run.status = "unfinished"
        run.note = "unfinished (no evaluation yet)" if last is None else \
            f"unfinished (last evaluation at step {last} of {run.steps})"
    return run


def metric_names(runs: list[Run], published: dict) -> tuple[list[str], dict]:
    """(tabulated metrics in the evaluators' order, {constant metric: its value}); see the docstring."""
    finals = [r.final for r in runs if r.status == "finished"]
    keys: dict[str, None] = {}
    for final in finals:
        for k, v in final.items():
            if k not in ("step", "event") and (v is None or (isinstance(v, int | float) and not isinstance(v, bool))):
                keys[k] = None
    with_published = {k for values in published.values() for k, v in (values or {}).items() if v is not None}
    constants = {}
    for k in keys:
        values = [f.get(k) for f in finals]
        if len(values) >= 2 and all(_number(v) for v in values) and len(set(values)) == 1 \
                and k not in with_published:
            constants[k] = values[0]
    names = [k for k in keys if k not in constants]
    names += sorted(k for k in with_published if k not in keys)  # published, but not in our evaluations
    return names, constants


def published_value(published: dict, setting: str, metric: str) -> tuple[float | None, float | None]:
    """(mean, standard error) of a published entry: a number, [mean, se], or null/absent."""
    v = (published.get(setting) or {}).get(metric)
    if isinstance(v, list | tuple):
        return float(v[0]), (None if len(v) < 2 or v[1] is None else float(v[1]))
    return (None, None) if v is None else (float(v), None)


def _fmt(v) -> str:
    return DASH if v is None else f"{v:.4g}"


def _cell(s: Summary) -> str:
    if s.n == 0:
        return f"{DASH} (n=0)"
    half = None if s.high is None else (s.high - s.low) / 2
    return f"{_fmt(s.mean)} ± {_fmt(half)} (std {_fmt(s.std)}, n={s.n})"


def _published_cell(mean, se) -> str:
    return _fmt(mean) if se is None or mean is None else f"{_fmt(mean)} (s.e. {_fmt(se)})"


def _runs_cell(runs: list[Run]) -> str:
    """'3 of 5 finished: 1 diverged, 1 missing'."""
    counts = {s: sum(r.status == s for r in runs) for s in ("diverged", "missing", "unfinished")}
    flags = ", ".join(f"{c} {s}" for s, c in counts.items() if c)
    finished = sum(r.status == "finished" for r in runs)
    return f"{finished} of {len(runs)} finished" + (f": {flags}" if flags else "")


def _steps_line(runs: list[Run]) -> str:
    steps: dict = {}
    for r in runs:
        if r.status != "missing":
            steps.setdefault(r.steps, []).append(r.name)
    if len(steps) <= 1:
        return f"train.steps = {next(iter(steps), DASH)} in every run."
    parts = "; ".join(f"{s} ({len(names)} runs: {', '.join(names)})" for s, names in sorted(steps.items(),
                                                                                              key=str))
    return f"**train.steps differs between runs**: {parts}."


def markdown(record: dict, runs: list[Run], settings: dict[str, list[Run]], names: list[str],
             constants: dict) -> str:
    """results.md: title, protocol constants, the table (ours, then published under each setting), the
    runs not counted, and the definitions."""
    published, source = record.get("published") or {}, record.get("published_source") or ""
    lines = [f"# Sweep results: `{record.get('config', '')}`", "", _steps_line(runs), ""]
    if constants:
        lines += ["Same in every finished run (not tabulated): "
                  + ", ".join(f"{k} = {_fmt(v)}" for k, v in constants.items()) + ".", ""]
    lines += ["| setting | runs | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for setting, members in settings.items():
        lines.append(f"| {setting} | {_runs_cell(members)} | "
                     + " | ".join(_cell(summarize(r.final.get(m) for r in members)) for m in names) + " |")
        if any(published_value(published, setting, m)[0] is not None for m in names):
            label = f"published ({source})" if source else "published"
            lines.append(f"| ↳ {label} | | "
                         + " | ".join(_published_cell(*published_value(published, setting, m)) for m in names)
                         + " |")
    notes = [f"- {r.name}: {r.note}" for r in runs if r.note]
    notes += [f"- {r.name}: {m} is {json.dumps(r.final[m])} (not counted)" for r in runs for m in names
              if m in r.final and not _number(r.final[m])]
    if notes:
        lines += ["", "Not counted:", "", *notes]
    lines += ["", f"*{FOOTNOTE}*", ""]
    return "\n".join(lines)


def csv_text(settings: dict[str, list[Run]], names: list[str], published: dict) -> str:
    """results.csv: one row per (setting, metric); undefined numbers are empty."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for setting, members in settings.items():
        flags = [sum(r.status == s for r in members) for s in ("diverged", "missing", "unfinished")]
        for m in names:
            s = summarize(r.final.get(m) for r in members)
            row = [setting, m, s.n, s.mean, s.std, s.low, s.high, *published_value(published, setting, m), *flags]
            writer.writerow(["" if v is None else repr(v) if isinstance(v, float) else v for v in row])
    return out.getvalue()


def curve(members: list[Run], metric: str) -> tuple[np.ndarray, list[Summary]]:
    """The setting's evaluation steps and, at each, the summary over its runs that did not diverge."""
    alive = [r for r in members if r.status in ("finished", "unfinished")]
    steps = sorted({s for r in alive for s, e in r.evals.items() if _number(e.get(metric))})
    return np.array(steps), [summarize(r.evals.get(s, {}).get(metric) for r in alive) for s in steps]


def plot(sweep_dir: str, metric: str, settings: dict[str, list[Run]], published: dict, source: str) -> str:
    """results_<metric>.png: the mean over seeds against the step per setting, the 95% interval shaded
    where n >= 2, published values dotted."""
    plt = report.pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    dotted = False
    for i, (setting, members) in enumerate(settings.items()):
        colour = f"C{i % 10}"  # report.py's colours, in sweep order
        steps, summaries = curve(members, metric)
        if len(steps):
            ax.plot(steps, [s.mean for s in summaries], "o-", color=colour, linewidth=1.5, markersize=3,
                    label=setting)
            band = [s.n >= 2 for s in summaries]
            ax.fill_between(steps, [s.low if s.low is not None else np.nan for s in summaries],
                            [s.high if s.high is not None else np.nan for s in summaries],
                            where=band, color=colour, alpha=0.2, linewidth=0)
        mean, _ = published_value(published, setting, metric)
        if mean is not None:
            ax.axhline(mean, color=colour, linestyle=":", linewidth=1.2)
            dotted = True
    note = f"\n(dotted: published{', ' + source if source else ''})" if dotted else ""
    ax.set_title(metric + note, fontsize=10)
    ax.set_xlabel("step")
    ax.set_ylabel(metric.split("/", 1)[-1])
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return report.save_figure(fig, os.path.join(sweep_dir, f"results_{metric.replace('/', '_')}.png"))


def _write_text(path: str, text: str) -> str:
    return disk.write_text(path, text)


def write_results(sweep_dir: str) -> list[str]:
    """results.md, results.csv and one results_<metric>.png per tabulated metric in `sweep_dir`
    (atomically); returns their paths. A folder without sweep.json is a UserError (one line)."""
    record = sweep.read_sweep_file(sweep_dir)
    published, source = record.get("published") or {}, record.get("published_source") or ""
    runs = [read_run(sweep_dir, entry) for entry in record.get("runs", [])]
    settings: dict[str, list[Run]] = {}
    for r in runs:
        settings.setdefault(r.setting, []).append(r)  # dicts keep the sweep's order
    names, constants = metric_names(runs, {s: published.get(s) for s in settings})
    paths = [_write_text(os.path.join(sweep_dir, "results.md"), markdown(record, runs, settings, names, constants)),
             _write_text(os.path.join(sweep_dir, "results.csv"), csv_text(settings, names, published))]
    paths += [plot(sweep_dir, m, settings, published, source) for m in names]
    return paths
