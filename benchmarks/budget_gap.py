"""The gap to the papers' rows against the training budget: `python benchmarks/budget_gap.py` draws
docs/reference/budget_gap.png from docs/reference/budget_gap.csv (the figures of the README's
reproduction tables, each with the run that measured it; add a row when a sweep at a new budget ends).

One panel per (table, metric): ours against the fraction of the paper's budget (log scale), with 95%
CI bars where there were seeds, and the published figure as a dashed line at budget 1."""

import argparse
import csv
import os
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "reference")
TITLES = {("pacgan_ring", "high_quality"): "PacGAN ring: high-quality fraction",
          ("pacgan_ring", "reverse_kl"): "PacGAN ring: reverse KL",
          ("pacgan_grid", "high_quality"): "PacGAN grid: high-quality fraction",
          ("iwae", "test_nll"): "Burda et al. Table 1: test NLL (nats)"}


def read_rows(path: str) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def draw(rows: list[dict], out: str) -> None:
    panels = defaultdict(lambda: defaultdict(list))
    for r in rows:
        panels[(r["table"], r["metric"])][r["setting"]].append(r)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    for ax, (panel, settings) in zip(axes, panels.items(), strict=True):
        for i, (setting, points) in enumerate(sorted(settings.items())):
            points.sort(key=lambda r: float(r["budget"]))
            color = f"C{i}"
            x = [float(r["budget"]) for r in points]
            y = [float(r["ours"]) for r in points]
            err = [float(r["ci"]) if r["ci"] else 0.0 for r in points]
            ax.errorbar(x, y, yerr=err, marker="o", color=color, capsize=3, label=f"{setting} (ours)")
            ax.axhline(float(points[0]["published"]), color=color, linestyle="--", linewidth=1)
            ax.plot([1.0], [float(points[0]["published"])], marker="*", markersize=11, color=color)
        ax.set_xscale("log")
        ax.set_xlim(5e-4, 2)
        ax.set_xlabel("fraction of the paper's training budget")
        ax.set_title(TITLES.get(panel, " ".join(panel)), fontsize=9)
        ax.legend(fontsize=7)
    fig.text(0.5, 0.005, "dashed lines and stars: the published figures (budget 1)", ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(out, dpi=80)
    print(f"wrote {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--csv", default=os.path.join(DOCS, "budget_gap.csv"))
    p.add_argument("--out", default=os.path.join(DOCS, "budget_gap.png"))
    a = p.parse_args()
    draw(read_rows(a.csv), a.out)


if __name__ == "__main__":
    main()
