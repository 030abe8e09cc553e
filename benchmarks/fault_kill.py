"""Fault test: SIGKILL a dcgan_mnist smoke run at random moments, run the same command again each
time, and check that the final train state is bitwise equal to that of an uninterrupted run.

    python benchmarks/fault_kill.py                      # 20 kills (the long form)
    python benchmarks/fault_kill.py --kills 5 --steps 40 # the short form tests/test_checkpoint.py runs
    python benchmarks/fault_kill.py --sweep              # the same for dcgan_mnist's sweep: 3 seeds vectorized

Every fifth kill lands at a uniform moment of start-up (imports, restore, compilation; as long as
the shortest start-up seen); the rest wait for the first progress line of that life and then a
uniform moment of a window sized so that the kills spread over the whole run. A kill "landed during
a save" when it left an unfinished orbax folder (STEP.orbax-checkpoint-tmp*) behind; the phase of
a kill is "training" when that life had printed a progress line. Runs use one device and a
persistent compilation cache, filled by the uninterrupted run, so that a life costs seconds instead
of a compilation. The last line is KEY=VALUE: kills, kills_during_save, kills_during_startup, identical."""

import argparse
import glob
import json
import os
import pathlib
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def command(workdir: pathlib.Path, steps: int, checkpoint_every: int, data_dir: str, sweep: bool) -> list[str]:
    return [sys.executable, str(REPO / "launch.py"), "--config", "experiments/dcgan_mnist.py:smoke",
            "--workdir", str(workdir), f"--config.data.dir={data_dir}", f"--config.train.steps={steps}",
            f"--config.train.checkpoint_every={checkpoint_every}", "--config.train.log_every=2",
            f"--config.train.sample_every={steps}", *(["--sweep"] if sweep else [])]


def run_folders(workdir: pathlib.Path, sweep: bool) -> list[pathlib.Path]:
    """The run folders of a workdir: itself, or a sweep's runs (those that exist so far)."""
    return sorted(p.parent for p in workdir.glob("*/config.json")) if sweep else [workdir]


def environment(cache: pathlib.Path) -> dict:
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu", "PYTHONPATH": path, "PYTHONUNBUFFERED": "1",
            "JAX_COMPILATION_CACHE_DIR": str(cache), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def run_to_end(cmd: list[str], env: dict, log: pathlib.Path) -> float:
    t = time.time()
    with open(log, "a") as f:
        code = subprocess.run(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=1800).returncode
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {code}; see {log}")
    return time.time() - t


def first_progress_time(log: pathlib.Path, start: float, proc: subprocess.Popen, timeout: float = 600) -> float | None:
    """Seconds from `start` until `log` shows a training step, or None if the process ended first."""
    seen = log.stat().st_size if log.exists() else 0
    while time.time() - start < timeout:
        with open(log) as f:
            f.seek(seen)
            if re.search(r"^step \d+/", f.read(), re.MULTILINE):  # a progress line, not "resumed ... step"
                return time.time() - start
        if proc.poll() is not None:
            return None
        time.sleep(0.05)
    return None


def unfinished_saves(workdir: pathlib.Path, since: float, sweep: bool) -> list[str]:
    """Unfinished save folders created after `since` (older ones are a previous life's leftovers)."""
    pattern = str(workdir / ("*/checkpoints" if sweep else "checkpoints") / "*.orbax-checkpoint-tmp*")
    return [os.path.relpath(p, workdir) for p in glob.glob(pattern) if os.path.getmtime(p) >= since]


def compare_states(a: pathlib.Path, b: pathlib.Path) -> tuple[int, int, list[str]]:
    """(step of a, step of b, paths of leaves that differ bitwise) of the newest checkpoints."""
    import jax
    import numpy as np

    from gan_jax.sampling import restore

    (_, step_a, state_a), (_, step_b, state_b) = restore(str(a), None), restore(str(b), None)
    leaves_a = jax.tree_util.tree_leaves_with_path(jax.device_get(state_a))
    leaves_b = jax.tree.leaves(jax.device_get(state_b))
    differ = [jax.tree_util.keystr(p) for (p, x), y in zip(leaves_a, leaves_b, strict=True)
              if np.asarray(x).tobytes() != np.asarray(y).tobytes()]
    return step_a, step_b, differ


def fault_test(kills: int, steps: int, checkpoint_every: int, data_dir: str, root: pathlib.Path,
               seed: int = 0, verbose: bool = True, sweep: bool = False, spread: float = 1.0) -> dict:
    """Runs the reference and the killed run under `root`; returns the counts and the comparison.
    `spread`: the part of the run the kills are spread over, by the reference run's speed (below 1
    leaves room for lives that run faster than the reference did, as on a machine whose load drops)."""
    rng = random.Random(seed)
    say = print if verbose else (lambda *a, **k: None)
    env = environment(root / "jax_cache")
    ref, faulty = root / "uninterrupted", root / "killed"
    ref_log, log = root / "uninterrupted.log", root / "killed.log"
    start = time.time()
    with open(ref_log, "a") as f:
        proc = subprocess.Popen(command(ref, steps, checkpoint_every, data_dir, sweep), cwd=REPO, env=env, stdout=f,
                                stderr=subprocess.STDOUT)
    startup = first_progress_time(ref_log, start, proc)
    if proc.wait() != 0 or startup is None:
        raise SystemExit(f"the uninterrupted run failed with status {proc.returncode}; see {ref_log}")
    ref_seconds = time.time() - start
    # This run also fills the compilation cache, so its start-up is longer than that of the lives.
    say(f"uninterrupted run: {ref_seconds:.1f} s, of which {startup:.1f} s before the first step line")
    # Lives advance about half a window each (less what is redone), so the kills spread over the run.
    window = spread * (ref_seconds - startup) / max(kills, 1) + 1.0  # + the first save of a life, ~1 s
    cmd = command(faulty, steps, checkpoint_every, data_dir, sweep)
    during_save, during_startup, lives, finished_early, warm_startups = 0, 0, [], False, []
    while len(lives) < kills:
        start = time.time()
        with open(log, "a") as f:
            f.write(f"=== life {len(lives) + 1}\n")
            f.flush()
            offset = f.tell()
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)
        if len(lives) % 5 == 4:
            time.sleep(rng.uniform(0.0, min(warm_startups, default=startup)))
        else:
            ready = first_progress_time(log, start, proc)
            if ready is not None:
                warm_startups.append(ready)
            time.sleep(rng.uniform(0.0, window))
        if proc.poll() is not None:
            if proc.returncode != 0:
                raise SystemExit(f"the killed run failed with status {proc.returncode}; see {log}")
            finished_early = True
            say(f"the run finished before kill {len(lives) + 1}; use more --steps for more kills")
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with open(log) as f:
            f.seek(offset)
            phase = "training" if re.search(r"^step \d+/", f.read(), re.MULTILINE) else "start-up"
        partial = unfinished_saves(faulty, since=start, sweep=sweep)
        during_save += bool(partial)
        during_startup += phase == "start-up"
        done = [sorted(int(p.name) for p in (run / "checkpoints").glob("*") if p.name.isdigit())
                for run in run_folders(faulty, sweep)]
        done = done[0] if not sweep else done
        lives.append({"after_s": round(time.time() - start, 2), "phase": phase, "unfinished": partial,
                      "checkpoints": done})
        say(f"kill {len(lives):2d} after {lives[-1]['after_s']:5.2f} s ({phase}); checkpoints {done}"
            f"{'; during a save: ' + ', '.join(partial) if partial else ''}")
    if not finished_early:
        run_to_end(cmd, env, log)
    runs = run_folders(ref, sweep)
    compared = [compare_states(run, faulty / run.relative_to(ref)) for run in runs]
    differ = [f"{run.name}: {leaf}" for run, (_, _, leaves) in zip(runs, compared, strict=True) for leaf in leaves]
    identical = bool(runs) and all(a == b == steps for a, b, _ in compared) and not differ
    result = {"kills": len(lives), "kills_during_save": during_save, "kills_during_startup": during_startup,
              "finished_before_the_last_kill": finished_early, "final_step": min(b for _, b, _ in compared),
              "runs": len(runs), "identical": identical, "differing_leaves": differ[:5]}
    say(json.dumps(result))
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--steps", type=int, default=160)  # 100 could finish before the 20th kill
    p.add_argument("--checkpoint_every", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--keep", default=None, help="folder to run in and keep (default: a temporary one)")
    p.add_argument("--sweep", action="store_true", help="kill dcgan_mnist's sweep (its runs vectorized)")
    a = p.parse_args()
    root = pathlib.Path(a.keep or tempfile.mkdtemp(prefix="fault_kill_"))
    root.mkdir(parents=True, exist_ok=True)
    result = fault_test(a.kills, a.steps, a.checkpoint_every, a.data_dir, root, a.seed, sweep=a.sweep)
    if not a.keep:
        shutil.rmtree(root, ignore_errors=True)
    print(" ".join(f"{k}={result[k]}" for k in ("kills", "kills_during_save", "kills_during_startup", "runs",
                                                 "identical")))
    sys.exit(0 if result["identical"] else 1)


if __name__ == "__main__":
    main()
