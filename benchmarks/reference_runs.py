"""The README's "What the defaults give": each experiment trained at its default config on this machine,
evaluated by the evaluators that fit it, its last sample grid copied (downscaled) under docs/reference/.

    python benchmarks/reference_runs.py --runs runs/reference quickstart dcgan_mnist gan_ring
    python benchmarks/reference_runs.py --runs runs/reference --steps dcgan_cifar10=5000 dcgan_cifar10
    python benchmarks/reference_runs.py --runs runs/reference --table   # only the table of what is there

A run that exists is resumed (a finished one is only evaluated again if it has no evaluation of its last
step), so the table can be built over several sessions. `--steps NAME=N` trains a shorter budget than
the default (CelebA, CIFAR-10 on a CPU); the table states it. Wall times are of the training command
(compilation included; the end-of-run evaluation where the config has one) and of `--mode=eval`.
Local data is read from $GAN_JAX_DATA (default ../shared/data)."""

import argparse
import glob
import json
import os
import subprocess
import sys
import time

from PIL import Image

from gan_jax import disk
from gan_jax.api import load_config
from gan_jax.evaluate import evaluators
from gan_jax.writers import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs", "reference")
GRID_PIXELS = 240  # the copied grid's longer side: small enough to keep in the repository

# What the table shows of each evaluator's result (the rest stays in the run's eval JSON).
SHOWN = {
    "classifier_space": ("fid", "kid", "precision", "recall", "density", "coverage", "confident_fraction"),
    "modes": ("modes_captured", "high_quality_fraction", "reverse_kl"),
    "stacked_modes": ("modes_captured", "reverse_kl"),
    "vae_likelihood": ("test_nll_iwae_nats", "test_neg_elbo_nats", "active_units"),
    "classifier_accuracy": ("accuracy", "cross_entropy_nats"),
    "parzen": ("test_ll_nats",),
    "conditional": ("accuracy", "worst_class_accuracy", "intra_fid"),
    "cas": ("accuracy",),
}


def timed(cmd: list[str], log: str) -> float:
    """Runs `cmd` from the repository root with its output appended to `log`; its wall seconds."""
    start = time.perf_counter()
    with open(log, "a") as f:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        sys.exit(f"{' '.join(cmd)} exited {rc}; see {log}")
    return time.perf_counter() - start


def newest(pattern: str) -> str | None:
    paths = sorted(glob.glob(pattern))
    return paths[-1] if paths else None


def evaluation(workdir: str, log: str, record: dict) -> dict:
    """{evaluator: metrics} of the run's last step: from metrics.jsonl where the run evaluated it (its
    eval.every), else from `--mode=eval` (timed into record['eval_seconds'])."""
    records = read_metrics(workdir)
    last = records[-1]["step"]
    nested: dict = {}
    for r in records:
        for key, value in r.items():
            if r["step"] == last and key.split("/")[0] in evaluators.EVALUATORS:
                nested.setdefault(key.split("/")[0], {})[key.split("/", 1)[1]] = value
    if nested:
        return nested
    path = os.path.join(workdir, f"eval_step_{last:07d}.json")
    if not os.path.exists(path):
        record["eval_seconds"] = timed([sys.executable, "launch.py", "--mode=eval", "--workdir", workdir], log)
    return json.load(open(path))


def run(name: str, runs: str, steps: int | None) -> dict:
    """Trains (or resumes) experiments/NAME.py in RUNS/NAME, evaluates its last step, copies its grid."""
    workdir, data = os.path.join(runs, name), os.environ.get("GAN_JAX_DATA", os.path.join(ROOT, "..", "shared", "data"))
    os.makedirs(runs, exist_ok=True)
    log = os.path.join(runs, f"{name}.log")
    overrides = [f"--config.train.steps={steps}"] if steps else []
    file, colon, arg = name.partition(":")  # 'gan_mnist:paper' -> experiments/gan_mnist.py:paper
    spec = f"experiments/{file}.py{colon}{arg}"
    train = [sys.executable, "launch.py", "--config", spec, "--workdir", workdir,
             *overrides, *([f"--config.data.dir={data}"] if os.path.isdir(data) else [])]
    record_path = os.path.join(runs, f"{name}.json")
    record = json.load(open(record_path)) if os.path.exists(record_path) else {"name": name, "train_seconds": 0.0}
    record["steps_asked"] = steps
    wanted = steps or load_config(spec).train.steps
    if not read_metrics(workdir) or read_metrics(workdir)[-1]["step"] < wanted:
        record["train_seconds"] += timed(train, log)  # summed over the sessions a resumed run took
        disk.write_text(record_path, json.dumps(record, indent=1))
    last = read_metrics(workdir)[-1]["step"]
    if last < wanted:  # stopped by a signal: resumed by the next call
        sys.exit(f"{name}: stopped at step {last} of {wanted}; run the same command to resume")
    record.update(step=last, eval=evaluation(workdir, log, record))
    grid = newest(os.path.join(workdir, "samples", "step_*.png"))
    if grid:
        os.makedirs(DOCS, exist_ok=True)
        image = Image.open(grid)
        image.thumbnail((GRID_PIXELS, GRID_PIXELS), Image.LANCZOS)
        image.save(os.path.join(DOCS, f"{name.replace(':', '_')}.png"), optimize=True)
        record["grid"] = os.path.relpath(grid, workdir)
    disk.write_text(record_path, json.dumps(record, indent=1))
    return record


def cells(record: dict) -> str:
    shown = []
    for evaluator, names in SHOWN.items():
        result = record["eval"].get(evaluator) or {}
        shown += [f"{k} {result[k]:.4g}" if isinstance(result[k], float) else f"{k} {result[k]}"
                  for k in names if k in result]
    return ", ".join(shown)


def table(runs: str) -> str:
    rows = ["| experiment | steps | train wall | eval wall | metrics (the last step) | last grid |",
            "|---|---|---|---|---|---|"]
    for path in sorted(glob.glob(os.path.join(runs, "*.json"))):
        r = json.load(open(path))
        if "step" not in r:  # still training (resumed by the next call)
            continue
        budget = f"{r['step']:,}" + (" (budget)" if r.get("steps_asked") else "")
        grid = f"![{r['name']}](docs/reference/{r['name'].replace(':', '_')}.png)" if r.get("grid") else ""
        rows.append(f"| `{r['name']}` | {budget} | {r['train_seconds'] / 60:.1f} min | "
                    f"{r.get('eval_seconds', 0) / 60:.1f} min | {cells(r)} | {grid} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", nargs="*", help="names under experiments/ (without .py), or NAME:ARG")
    parser.add_argument("--runs", default=os.path.join(ROOT, "runs", "reference"))
    parser.add_argument("--steps", action="append", default=[], help="NAME=N: a shorter budget for NAME")
    parser.add_argument("--table", action="store_true", help="only print the table of the runs there")
    args = parser.parse_args()
    budgets = dict(s.split("=") for s in args.steps)
    for name in [] if args.table else args.experiments:
        file = name.partition(":")[0]
        if not os.path.exists(os.path.join(ROOT, "experiments", f"{file}.py")):
            sys.exit(f"experiment {name!r}: no experiments/{file}.py")
        print(json.dumps(run(name, os.path.abspath(args.runs), int(budgets[name]) if name in budgets else None)),
              flush=True)
    print(table(os.path.abspath(args.runs)))


if __name__ == "__main__":
    main()
