"""What happens when a user does something unexpected (README, "What happens when..."): real
processes, real signals sent at the moment named, the workdir inspected afterwards."""

import json
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import load_experiment, once_per_process, process_env

REPO = pathlib.Path(__file__).resolve().parents[1]
RING = ["--config", "experiments/gan_mixture.py:ring,smoke"]


def start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO / "launch.py"), *args], cwd=REPO, env=process_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


class Output:
    """Collects a process's stdout and stderr in threads, so that a test can wait for a line."""

    def __init__(self, process: subprocess.Popen):
        self.process, self.lines, self.err = process, [], []
        self._threads = [threading.Thread(target=self._read, args=(s, t), daemon=True)
                         for s, t in ((process.stdout, self.lines), (process.stderr, self.err))]
        for t in self._threads:
            t.start()

    def _read(self, stream, into):
        for line in stream:
            into.append(line)

    def wait_for(self, text: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.finish(timeout=10)
                raise AssertionError(f"never printed {text!r}:\n{self.stdout[-3000:]}\n{self.stderr[-3000:]}")
            time.sleep(0.02)

    def finish(self, timeout: float = 300) -> int:
        code = self.process.wait(timeout=timeout)
        for t in self._threads:
            t.join(timeout=10)
        return code

    @property
    def stdout(self) -> str:
        return "".join(self.lines)

    @property
    def stderr(self) -> str:
        return "".join(self.err)


def run(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    p = start(*args)
    out, err = p.communicate(timeout=timeout)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def listing(workdir: pathlib.Path) -> dict:
    """Every file under workdir (but the lock) with its size and mtime."""
    return {str(p.relative_to(workdir)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in workdir.rglob("*") if p.is_file() and p.name != ".lock"}


def records(workdir: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def train_to_end(tmp_path_factory, config: list[str], name: str) -> pathlib.Path:
    """A smoke run of `config` trained to its end (step 4, checkpoints 2 and 4) in a folder `name`."""
    workdir = tmp_path_factory.mktemp("trained") / name
    out = run(*config, "--workdir", str(workdir))
    assert out.returncode == 0, out.stderr[-3000:]
    return workdir


def copy_run(workdir: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    """A copy of a trained run that a test may change."""
    copy = tmp_path / workdir.name
    shutil.copytree(workdir, copy)
    return copy


@pytest.fixture(scope="module")
@once_per_process
def trained_ring(tmp_path_factory) -> pathlib.Path:
    """gan_mixture:ring smoke, trained once per module."""
    return train_to_end(tmp_path_factory, RING, "run")


@pytest.fixture
def trained(trained_ring, tmp_path) -> pathlib.Path:
    return copy_run(trained_ring, tmp_path)


def test_second_run_in_a_workdir_is_refused_while_the_first_goes_on(tmp_path):
    workdir = tmp_path / "run"
    first = Output(start(*RING, "--workdir", str(workdir), "--config.train.steps=1000000",
                         "--config.train.sample_every=1000000", "--config.train.checkpoint_every=1000000"))
    first.wait_for("start-up: compiling the step")  # the first run holds the lock from here on
    second = run(*RING, "--workdir", str(workdir), "--config.train.steps=1000000",
                 "--config.train.sample_every=1000000", "--config.train.checkpoint_every=1000000", timeout=120)
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "is in use by a training run" in lines[0], second.stderr
    assert f"pid {first.process.pid}" in lines[0]
    logged = len(first.lines)
    first.wait_for("step ")  # the first run goes on
    while len(first.lines) <= logged:
        time.sleep(0.05)
    first.process.send_signal(signal.SIGTERM)
    assert first.finish() == 0, first.stderr[-3000:]
    steps = [r["step"] for r in records(workdir) if "event" not in r]
    assert steps == sorted(steps) and len(steps) == len(set(steps))  # one run's records, not two interleaved
    assert not list((workdir / "checkpoints").glob("*tmp*"))


def test_a_killed_run_leaves_no_stale_lock(tmp_path):
    workdir = tmp_path / "run"
    first = Output(start(*RING, "--workdir", str(workdir), "--config.train.steps=100000"))
    first.wait_for("step ")
    first.process.kill()
    first.finish()
    assert (workdir / ".lock").exists()
    out = run(*RING, "--workdir", str(workdir), "--config.train.steps=4")
    assert out.returncode == 0, out.stderr[-3000:]


def test_a_deleted_lock_file_still_keeps_a_second_run_out(tmp_path):
    """The lock is on the workdir folder: deleting WORKDIR/.lock by hand while a run trains must not
    let a second run in (it would remove the first run's save in progress)."""
    workdir = tmp_path / "run"
    args = [*RING, "--workdir", str(workdir), "--config.train.steps=1000000", "--config.train.checkpoint_every=20"]
    first = Output(start(*args))
    first.wait_for("checkpoint_blocking_s")  # training, with a checkpoint written
    (workdir / ".lock").unlink()
    second = run(*args, timeout=120)
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 2 and len(lines) == 1, second.stderr[-3000:]
    assert "is in use by a training run" in lines[0] and f"pid {first.process.pid}" in lines[0], lines[0]
    logged = len(first.lines)
    while len(first.lines) <= logged + 2:  # the first run goes on
        assert first.process.poll() is None, first.stderr[-3000:]
        time.sleep(0.05)
    first.process.send_signal(signal.SIGTERM)
    assert first.finish() == 0, first.stderr[-3000:]
    assert "Traceback" not in first.stderr, first.stderr[-3000:]
    saved = [line for line in first.lines if "SIGTERM: saved the checkpoint at step" in line]
    step = int(saved[0].split("step ")[1].split(";")[0])
    assert not list((workdir / "checkpoints").glob("*tmp*"))
    resumed = run(*RING, "--workdir", str(workdir), f"--config.train.steps={step + 2}")
    assert resumed.returncode == 0 and f"resumed from checkpoint at step {step}" in resumed.stdout, resumed.stderr


@pytest.fixture
def small_disk(tmp_path):
    """A real small filesystem (tmpfs, root only) with 40 MB; skipped where mount is refused."""
    mount = tmp_path / "disk"
    mount.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mount)], capture_output=True,
                         text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {out.stderr.strip() or out.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(disk: pathlib.Path, leave: int) -> pathlib.Path:
    """A filler file that leaves `leave` bytes free on `disk`."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    with open(filler, "wb") as f:
        f.write(b"\0" * (free - leave))
    return filler


# Checkpoints of ~11 MB (2 and 4) without G's moving average, which the sizes below are chosen for.
QUICK = ["--config", "experiments/quickstart.py:smoke", "--config.train.ema_decay=0"]
FULL_DISK = (r"error: no space left on device while {what}: checkpoint 2 is the newest kept; "
             r"free space and run the same command to resume")


def test_a_full_disk_while_saving_is_one_line_and_the_run_resumes(small_disk, tmp_path):
    workdir = small_disk / "run"
    filler = fill(small_disk, 16 << 20)  # room for checkpoint 2, not for checkpoint 4 beside it
    out = run(*QUICK, "--workdir", str(workdir))
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr[-3000:]
    # Checkpoint 4 is written in the background: its first bytes can fill the disk before the step's sample
    # grid or curves are written, and then that write is what fails first. Any of these reports is the one line.
    what = r"(saving checkpoint 4 in .*|writing curves\.png/progress\.gif in .*|writing \S+/samples/step_0000004\.png)"
    assert re.fullmatch(FULL_DISK.format(what=what), out.stderr.strip()), out.stderr
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == ["2"]
    [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    filler.unlink()
    resumed = run(*QUICK, "--workdir", str(workdir))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "removed 1 unfinished checkpoint save" in resumed.stdout and "resumed from checkpoint at step 2" in \
        resumed.stdout, resumed.stdout
    uninterrupted = run(*QUICK, "--workdir", str(tmp_path / "uninterrupted"))
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    checksum = lambda w: json.loads((w / "checkpoints" / "4" / "checksum" / "metadata").read_text())
    assert checksum(workdir) == checksum(tmp_path / "uninterrupted")  # bitwise the run never stopped


def test_a_full_disk_in_a_vectorized_sweep_is_one_line_naming_each_runs_newest_checkpoint(small_disk):
    """Three quickstart:smoke runs as one program, the disk full at the first checkpoints: one line
    (orbax's save tasks printed their tracebacks here too), each run's newest kept checkpoint named as
    its folder holds it; every metrics.jsonl whole."""
    sweep_dir = small_disk / "sweep"
    fill(small_disk, 20 << 20)  # one run's checkpoint 2 fits, not three
    out = run(*QUICK, "--workdir", str(sweep_dir), "--sweep")
    assert out.returncode == 2, out.stderr[-3000:]
    lines = out.stderr.strip().splitlines()
    assert "Traceback" not in out.stderr and len(lines) == 1, out.stderr[-3000:]
    assert re.fullmatch(r"error: no space left on device while .*: the newest checkpoints kept: seed=0 \S+, "
                        r"seed=1 \S+, seed=2 \S+; free space and run the same command to resume", lines[0]), lines
    for name, kept in re.findall(r"(seed=\d) (\S+?)[,;]", lines[0]):
        saved = sorted(int(p.name) for p in (sweep_dir / name / "checkpoints").iterdir() if p.name.isdigit())
        assert (str(saved[-1]) if saved else "none") == kept, (name, saved)
        [json.loads(line) for line in (sweep_dir / name / "metrics.jsonl").read_text().splitlines()]


def test_a_full_disk_while_writing_samples_or_metrics_is_one_line(small_disk):
    workdir = small_disk / "run"
    filler = fill(small_disk, 14 << 20)
    first = run(*QUICK, "--workdir", str(workdir), "--config.train.steps=2")
    assert first.returncode == 0, first.stderr[-3000:]
    # Every step now writes a sample grid, metrics and events (and the report's figures every 30 s) until the
    # disk is full.
    args = [*QUICK, "--workdir", str(workdir), "--config.train.steps=30", "--config.train.sample_every=1",
            "--config.train.log_every=1", "--config.train.checkpoint_every=1000"]
    out = run(*args)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr[-3000:]
    assert re.fullmatch(FULL_DISK.format(what="writing .*"), out.stderr.strip()), out.stderr
    [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]  # no line cut short
    assert not list(workdir.rglob("*.tmp.*"))  # no half-written figure left
    filler.unlink()
    resumed = run(*args)
    assert resumed.returncode == 0 and "resumed from checkpoint at step 2" in resumed.stdout, resumed.stderr[-3000:]


def test_sigint_twice_during_sample_grids_still_saves(tmp_path):
    workdir = tmp_path / "run"
    # Every step writes a 1,000-point scatter, so most of the loop's time is in the sample grid write.
    p = Output(start(*RING, "--workdir", str(workdir), "--config.train.steps=100000", "--config.train.sample_every=1",
                     "--config.train.steps_per_call=1", "--config.train.checkpoint_every=100000"))
    p.wait_for("step 2/")
    p.process.send_signal(signal.SIGINT)
    time.sleep(0.05)
    p.process.send_signal(signal.SIGINT)
    assert p.finish() == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stderr and "still stopping cleanly" in p.stderr
    saved = [line for line in p.lines if "SIGINT: saved the checkpoint at step" in line]
    assert saved, p.stdout[-2000:]
    step = int(saved[0].split("step ")[1].split(";")[0])
    assert (workdir / "checkpoints" / str(step)).is_dir()
    resumed = run(*RING, "--workdir", str(workdir), f"--config.train.steps={step + 2}",
                  "--config.train.sample_every=1", "--config.train.steps_per_call=1",
                  "--config.train.checkpoint_every=100000")
    assert f"resumed from checkpoint at step {step}" in resumed.stdout, resumed.stdout + resumed.stderr


def test_a_third_signal_aborts_and_says_what_was_kept(tmp_path):
    workdir = tmp_path / "run"
    p = Output(start(*RING, "--workdir", str(workdir), "--config.train.steps=100000", "--config.train.sample_every=1",
                     "--config.train.steps_per_call=1", "--config.train.checkpoint_every=2"))
    p.wait_for("checkpoint_blocking_s")
    p.wait_for("step 6/")
    # Each signal after the last one's message: signals that arrive while the main thread is inside a C
    # call coalesce into one (POSIX does not queue them), and the third would then never be seen.
    for message in ("stopping cleanly", "still stopping cleanly", None):
        p.process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 60
        while message and not any(message in line for line in p.err) and time.monotonic() < deadline:
            time.sleep(0.005)
    assert p.finish() == 130, p.stderr[-3000:]
    assert "aborted without saving; checkpoint" in p.stderr and "Traceback" not in p.stderr, p.stderr[-3000:]
    kept = int(p.stderr.split("aborted without saving; checkpoint ")[1].split()[0])
    assert (workdir / "checkpoints" / str(kept)).is_dir()


@pytest.mark.parametrize("phase", ["loading data", "compiling the step"])
def test_sigterm_during_start_up_of_a_new_run(phase, tmp_path):
    workdir = tmp_path / "run"
    p = Output(start(*RING, "--workdir", str(workdir)))
    p.wait_for(f"start-up: {phase}")
    p.process.send_signal(signal.SIGTERM)
    assert p.finish() == 0, p.stderr[-3000:]
    assert "SIGTERM during start-up" in p.stdout and "stopped before training" in p.stdout, p.stdout
    assert not workdir.exists() or listing(workdir) == {}  # at most the lock file


def test_sigterm_while_restoring_leaves_the_workdir_untouched(trained):
    workdir = trained
    before = listing(workdir)
    p = Output(start(*RING, "--workdir", str(workdir), "--config.train.steps=8"))
    p.wait_for("start-up: looking for checkpoints")
    p.process.send_signal(signal.SIGTERM)
    assert p.finish() == 0, p.stderr[-3000:]
    assert "stopped before training" in p.stdout, p.stdout
    assert listing(workdir) == before


def test_last_call_runs_only_the_remaining_steps(tmp_path):
    workdir = tmp_path / "run"
    out = run(*RING, "--workdir", str(workdir), "--config.train.steps=6", "--config.train.steps_per_call=4",
              "--config.train.log_every=1")
    assert out.returncode == 0, out.stderr[-3000:]
    steps = [r["step"] for r in records(workdir)]
    assert max(steps) == 6 and "ETA -" not in out.stdout
    assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir()) == [4, 6]  # call ends: 4, 6


def test_nothing_to_train_says_so_and_writes_nothing(trained):
    workdir = trained
    before = listing(workdir)
    out = run(*RING, "--workdir", str(workdir), "--config.train.steps=2")
    assert out.returncode == 0 and "nothing to train" in out.stdout, out.stdout + out.stderr
    assert listing(workdir) == before  # config.json keeps train.steps=4


def test_checkpoints_removed_retrains_from_zero_and_says_so(trained):
    workdir = trained
    shutil.rmtree(workdir / "checkpoints")
    out = run(*RING, "--workdir", str(workdir))
    assert out.returncode == 0 and "no intact checkpoint" in out.stdout and "training from step 0" in out.stdout


DAMAGED = ["", "{\"objective\": ", "[1, 2]", "\xff\xfe"]


@pytest.mark.parametrize("content", DAMAGED)
def test_damaged_config_json_is_one_line_error(content, tmp_path):
    from gan_jax.errors import UserError
    from gan_jax.experiment import check_workdir_config, load_workdir_config

    (tmp_path / "config.json").write_bytes(content.encode("latin-1"))
    for read in (load_workdir_config, lambda w: check_workdir_config(w, load_experiment("gan_mixture:ring,smoke"))):
        with pytest.raises(UserError) as e:
            read(str(tmp_path))
        text = str(e.value)
        assert len(text.splitlines()) == 1 and "config.json is damaged" in text and "checkpoints/STEP/config" in text


@pytest.mark.parametrize("mode,content", [("train", DAMAGED[0]), ("sample", DAMAGED[1])])
def test_damaged_config_json_through_launch(mode, content, trained):
    (trained / "config.json").write_bytes(content.encode("latin-1"))
    before = listing(trained)
    args = [*RING, "--workdir", str(trained)] if mode == "train" else ["--mode=sample", "--workdir", str(trained)]
    out = run(*args)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr[-3000:]
    assert "config.json is damaged" in lines[0]
    assert listing(trained) == before


def test_sampling_more_than_fits_on_the_disk_is_one_line(trained):
    before = listing(trained)
    out = run("--mode=sample", "--workdir", str(trained), "--num_samples=1000000000000")
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr[-3000:]
    assert "--num_samples=1000000000000 needs" in lines[0] and "accepted: at most" in lines[0]
    assert listing(trained) == before


def test_sampling_without_checkpoints_creates_nothing(trained):
    shutil.rmtree(trained / "checkpoints")
    before = listing(trained)
    out = run("--mode=sample", "--workdir", str(trained))
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and "has no checkpoint" in lines[0], out.stderr[-3000:]
    assert listing(trained) == before and not (trained / "checkpoints").exists()


def test_a_workdir_from_before_a_new_field_resumes_and_samples(trained):
    """A config.json written before a field existed (here: loss.gaussian_std removed from it) stands for
    that field's default: the run resumes and samples; a non-default value counts as another config."""
    saved = json.loads((trained / "config.json").read_text())
    del saved["loss"]["gaussian_std"]
    (trained / "config.json").write_text(json.dumps(saved))
    from gan_jax.experiment import check_workdir_config, load_workdir_config

    cfg = load_experiment("gan_mixture:ring,smoke")
    assert check_workdir_config(str(trained), cfg) is True
    assert load_workdir_config(str(trained)).loss.gaussian_std == cfg.loss.gaussian_std
    cfg.loss.name = "minimax"
    with pytest.raises(Exception, match="holds a run with a different config .loss.name"):
        check_workdir_config(str(trained), cfg)
    out = run(*RING, "--workdir", str(trained), "--config.train.steps=6")
    assert out.returncode == 0 and "resumed from checkpoint at step 4" in out.stdout, out.stderr[-3000:]


def test_metrics_counters_are_integers(tmp_path):
    from gan_jax.writers import MetricWriter

    writer = MetricWriter(str(tmp_path), 10, enabled=True)
    import numpy as np

    writer.write(3, {"rollback": 1, "key_fold": np.int32(10_001), "loss": np.float32(0.5), "event": "x"})
    writer.close()
    record = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert record == {"step": 3, "rollback": 1, "key_fold": 10001, "loss": 0.5, "event": "x"}
    assert isinstance(record["rollback"], int) and isinstance(record["key_fold"], int)


@pytest.mark.parametrize("mode", ["sample", "eval"])
def test_another_config_on_a_run_names_the_field_that_differs(mode, trained):
    """The full config on a smoke run's folder: one line naming a field in which it differs from
    config.json (it reported every checkpoint as damaged, then 'no intact checkpoint')."""
    before = listing(trained)
    out = run(f"--mode={mode}", "--workdir", str(trained), "--config", "experiments/gan_mixture.py:ring")
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr[-3000:]
    assert lines[0].startswith(f"error: --config differs from the run in {trained} (") and " there, " in lines[0]
    assert "damaged" not in out.stdout + out.stderr
    assert listing(trained) == before and not (trained / "damaged_checkpoints").exists()


def test_eval_overrides_without_config_apply_to_the_run(trained):
    out = run("--mode=eval", "--workdir", str(trained), "--config.eval.num_samples=300", "--config.eval.metrics",
              "modes")
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((trained / "eval_step_0000004.json").read_text())
    assert set(result) == {"step", "modes", "num_parameters"}
    with_default = run("--mode=eval", "--workdir", str(trained))
    assert with_default.returncode == 0 and json.loads(with_default.stdout.strip().splitlines()[-1]) != result
    for args, expected in [(["--config.eval.num_samples=many"], "error: --config.eval.num_samples='many' is not "
                                                                "accepted; accepted: a value of type int"),
                           (["--config.eval.nmu_samples=3"], "error: --config.eval.nmu_samples: the config has no "
                                                             "field 'eval.nmu_samples'"),
                           (["--config.model.generator_width=64"], "error: --config differs from the run in")]:
        out = run("--mode=eval", "--workdir", str(trained), *args)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith(expected), out.stderr[-3000:]


# --- a torn metrics.jsonl (a kill in the middle of a write) -----------------------------------------
QUICKSTART = ["--config", "experiments/quickstart.py:smoke"]
TORN = '{"step": 5, "d_loss": 0.69'  # a record cut by a kill: no closing brace, no newline


@pytest.fixture(scope="module")
@once_per_process
def trained_quickstart(tmp_path_factory) -> pathlib.Path:
    """quickstart smoke, trained once per module."""
    return train_to_end(tmp_path_factory, QUICKSTART, "quickstart")


@pytest.fixture
def quickstart(trained_quickstart, tmp_path) -> pathlib.Path:
    return copy_run(trained_quickstart, tmp_path)


def test_a_torn_metrics_line_is_skipped_by_readers_and_cut_by_the_resumed_run(quickstart, capsys):
    import gan_jax

    workdir = quickstart
    log = workdir / "metrics.jsonl"
    intact = log.read_text().splitlines()
    with open(log, "a") as f:
        f.write(TORN)
    report = run("--mode=report", "--workdir", str(workdir))
    assert report.returncode == 0 and (workdir / "report.html").is_file(), report.stderr[-3000:]
    assert "Traceback" not in report.stderr and f"{log}: skipped 1 line" in report.stderr, report.stderr[-3000:]
    frame = gan_jax.load_run(workdir).metrics
    assert list(frame["step"]) == [json.loads(line)["step"] for line in intact]
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and said[0].startswith(f"{log}: skipped 1 line"), said

    resumed = run(*QUICKSTART, "--workdir", str(workdir), "--config.train.steps=8")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"{log}: removed an incomplete last line ({len(TORN)} bytes" in resumed.stdout, resumed.stdout[-3000:]
    assert "could not refresh" not in resumed.stderr and "skipped" not in resumed.stderr, resumed.stderr[-3000:]
    lines = log.read_text().splitlines()
    assert lines[:len(intact)] == intact and log.read_bytes().endswith(b"\n")
    new = [json.loads(line) for line in lines[len(intact):]]  # every line parses
    assert [r["step"] for r in new if "event" not in r] == [6, 8]  # log_every=2: none lost to the torn line
    assert [r["step"] for r in new if r.get("event") == "checkpoint"] == [6, 8]


def test_read_metrics_skips_what_does_not_parse_and_says_so_once(tmp_path, capsys):
    from gan_jax.writers import read_metrics

    lines = ['{"step": 2, "d_loss": 1.0}', '{"step": 4, "d_lo{"step": 6, "d_loss": 0.5}', "[1, 2]", "",
             '{"step": 8}', TORN]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines))
    assert read_metrics(str(tmp_path)) == [{"step": 2, "d_loss": 1.0}, {"step": 8}]
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and said[0].startswith(f"{tmp_path / 'metrics.jsonl'}: skipped 3 line"), said
    assert read_metrics(str(tmp_path)) == [{"step": 2, "d_loss": 1.0}, {"step": 8}]
    assert capsys.readouterr().err == ""  # said once (training reads the log at every sample grid)
    assert read_metrics(str(tmp_path / "nothing")) == []


@pytest.mark.parametrize("content,kept", [
    (b"", b""),
    (b'{"step": 2}\n', b'{"step": 2}\n'),
    (b'{"step": 2}\n{"step": 4, "d_loss": 0.69', b'{"step": 2}\n'),  # the torn line spans blocks of 4 bytes
    (b'{"step": 2', b""),
    (b'{"step": 2}\n\n{', b'{"step": 2}\n\n'),
])
def test_truncate_torn_tail_cuts_back_to_the_last_complete_line(content, kept, tmp_path):
    from gan_jax.writers import truncate_torn_tail

    path = tmp_path / "metrics.jsonl"
    path.write_bytes(content)
    assert truncate_torn_tail(str(path), block=4) == len(content) - len(kept)
    assert path.read_bytes() == kept


def test_metric_writer_appends_after_a_torn_line_is_cut(tmp_path, capsys):
    from gan_jax.writers import MetricWriter

    (tmp_path / "metrics.jsonl").write_text('{"step": 4, "d_loss": 1.0}\n' + TORN)
    writer = MetricWriter(str(tmp_path), 10, enabled=True)
    writer.write(6, {"d_loss": 0.5})
    writer.close()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"step": 4, "d_loss": 1.0}, {"step": 6, "d_loss": 0.5}]
    said = [line for line in capsys.readouterr().out.splitlines() if "metrics.jsonl" in line]
    assert said == [f"{tmp_path / 'metrics.jsonl'}: removed an incomplete last line ({len(TORN)} bytes, a write "
                    "cut when the run was killed) before appending"]


# --- SIGHUP (the terminal or SSH session closed) ----------------------------------------------------
def test_sighup_while_it_trains_saves_and_exits_0(tmp_path):
    workdir = tmp_path / "run"
    p = Output(start(*RING, "--workdir", str(workdir), "--config.train.steps=100000", "--config.train.sample_every=1",
                     "--config.train.steps_per_call=1", "--config.train.log_every=1",
                     "--config.train.checkpoint_every=4"))
    p.wait_for("checkpoint_blocking_s")  # the periodic checkpoint at step 4
    p.wait_for("step 6/")
    p.process.send_signal(signal.SIGHUP)
    assert p.finish() == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stderr and "SIGHUP: stopping cleanly" in p.stderr, p.stderr[-3000:]
    saved = [line for line in p.lines if "SIGHUP: saved the checkpoint at step" in line]
    assert saved, p.stdout[-2000:]
    step = int(saved[0].split("step ")[1].split(";")[0])
    assert step >= 6 and max(int(d.name) for d in (workdir / "checkpoints").iterdir()) == step


# --- a signal during --mode=sample / --mode=eval ----------------------------------------------------
def wait_for_file(path: pathlib.Path, p: Output, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if p.process.poll() is not None or time.monotonic() > deadline:
            p.finish(timeout=10)
            raise AssertionError(f"{path} never appeared:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
        time.sleep(0.02)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_sampling_is_one_line_and_writes_nothing(sig, quickstart):
    workdir = quickstart
    before = listing(workdir)
    # 200,000 images take tens of seconds: the signal comes while chunks are written to samples.npz.tmp.
    p = Output(start("--mode=sample", "--workdir", str(workdir), "--num_samples=200000"))
    wait_for_file(workdir / "samples.npz.tmp", p)
    p.process.send_signal(sig)
    assert p.finish() == 128 + sig, p.stderr[-3000:]
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert lines == [f"interrupted ({sig.name}) during --mode=sample: nothing was written; samples.npz is "
                     "unchanged"], p.stderr[-3000:]
    assert listing(workdir) == before  # no samples.npz, no samples.npz.tmp, no picture


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_evaluating_is_one_line_and_writes_nothing(sig, quickstart):
    workdir = quickstart
    before = listing(workdir)
    # 20,000 samples scored by the classifier take minutes: the signal comes in the middle.
    p = Output(start("--mode=eval", "--workdir", str(workdir), *QUICKSTART, "--config.eval.num_samples=20000"))
    p.wait_for("evaluating step 4")
    time.sleep(1)
    p.process.send_signal(sig)
    assert p.finish() == 128 + sig, p.stderr[-3000:]
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert lines == [f"interrupted ({sig.name}) during --mode=eval: nothing was written; no eval_step_XXXXXXX.json "
                     "was written"], p.stderr[-3000:]
    assert listing(workdir) == before  # no eval_step_0000004.json, no .tmp
