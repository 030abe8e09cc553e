"""Runs an experiment: trains (resuming from the workdir's newest checkpoint), samples or evaluates.

  python launch.py --config experiments/quickstart.py --workdir runs/quickstart [--config.train.steps=100]
  python launch.py --mode=sample --workdir runs/quickstart --num_samples 1000 [--step 500]
  python launch.py --mode=sample --workdir runs/cdcgan_mnist --labels=3   # class-conditional: 3, 0,1,2 or all
  python launch.py --mode=sample --workdir runs/biggan --truncation=0.7   # latents truncated at |z_i| <= 0.7
  python launch.py --mode=eval --workdir runs/vae_mnist [--config.eval.iwae_k=500]  # overrides the run's config.json
  python launch.py --mode=report --workdir runs/quickstart   # report.html: config, curves, grids, pictures, evaluations
  python launch.py --config experiments/pacgan.py:ring --workdir runs/pacgan_ring --sweep [--sweep_index=I]
  python launch.py --mode=report --workdir runs/pacgan_ring   # a sweep's results.md/.csv and plots

Bad input (config values, config files, data files, a workdir in use) ends with one line on stderr and
exit status 2; a run that diverges (NaN or inf) ends with one line and exit status 1. SIGTERM/SIGINT/SIGHUP
stop a training run cleanly at any moment, start-up included (exit 0; a third signal aborts, exit 128 +
the signal's number); they stop --mode=sample/eval with one line and nothing written (exit 128 + the
number): see gan_jax/signals.py and the README's "What happens when..."."""

import ast
import os
import re
import signal
import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment file: experiments/NAME.py[:ARG].", lock_config=True)
flags.DEFINE_string("workdir", None, "Run folder: config.json, metrics.jsonl, samples/, checkpoints/, tensorboard/.")
flags.DEFINE_enum("mode", "train", ["train", "sample", "eval", "report"], "What to do.")
flags.DEFINE_integer("num_samples", 64, "--mode=sample: how many samples to write to samples.npz.")
flags.DEFINE_integer("step", None, "--mode=sample/eval: checkpoint step (default: the newest).")
flags.DEFINE_string("labels", None, "--mode=sample, class-conditional runs: the classes to draw, a class (3), classes "
                    "(0,1,2) taken in turn, or 'all' (the default: every class in turn).")
flags.DEFINE_float("truncation", None, "--mode=sample/eval: latents truncated at this |z_i| (the truncation trick; "
                   "the same as --config.eval.truncation; its method: --config.eval.truncation_method=resample|clip).")
flags.DEFINE_bool("sweep", False, "Train every variant of the experiment's get_sweep() in WORKDIR/<run name>/.")
flags.DEFINE_integer("sweep_index", None, "Train variant I of the sweep alone (a job-array task); implies --sweep.")
flags.DEFINE_bool("multihost", None, "Call jax.distributed.initialize() (default: on SLURM or a TPU pod).")
flags.DEFINE_string("coordinator_address", None, "Multi-host: HOST:PORT of process 0.")
flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
flags.DEFINE_integer("process_id", None, "Multi-host: this process's index.")
flags.DEFINE_integer("initialization_timeout", 300, "Multi-host: seconds to wait for the coordinator.")


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


# `--config.FIELD=VALUE` given without --config (sample/eval on an existing run): (field, text) pairs
# applied to the run's own config.json.
RUN_OVERRIDES: list[tuple[str, str]] = []


def parse_flags(argv):
    check_config_file(argv)
    if config_argument(argv) is None:
        argv = take_run_overrides(argv)
    try:
        return FLAGS(argv)
    except flags.Error as e:
        fail(flag_error_message(argv, e))
    except (AttributeError, KeyError) as e:  # an override naming a field that does not exist
        fail(unknown_field_message(argv, e))
    except (ValueError, TypeError, FileNotFoundError) as e:  # the config file, or an override's value
        fail(str(e).splitlines()[0] if str(e) else repr(e))
    except Exception as e:  # get_config itself raised: the experiment file is broken
        fail(f"--config: {config_argument(argv)} could not be loaded: {type(e).__name__}: {str(e).splitlines()[0]}")


def take_run_overrides(argv: list[str]) -> list[str]:
    """argv without its `--config.FIELD=VALUE` (or `--config.FIELD VALUE`) overrides, which go to
    RUN_OVERRIDES: without --config they apply to the workdir's config, not to an experiment file."""
    rest, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            field, eq, text = arg[len("--config."):].partition("=")
            if not eq and i + 1 < len(argv):
                i, text = i + 1, argv[i + 1]
            RUN_OVERRIDES.append((field, text))
        else:
            rest.append(arg)
        i += 1
    return rest


def run_config(workdir: str):
    """The config for --mode=sample/eval: --config's, or the run's config.json with RUN_OVERRIDES."""
    if not RUN_OVERRIDES:
        return FLAGS.config
    from gan_jax.config import override, validate
    from gan_jax.experiment import load_workdir_config

    cfg = load_workdir_config(workdir)
    for field, text in RUN_OVERRIDES:
        override(cfg, field, text)
    validate(cfg)
    return cfg


def flag_error_message(argv, error: Exception) -> str:
    """One line for a flag error; where get_config raised (config_flags wraps its traceback), that
    exception's message: a gan_jax error (a bad experiment argument) as is, others with their type."""
    text = str(error)
    if "Error whilst parsing config file" not in text:
        return text.splitlines()[0]
    kind, _, message = text.strip().splitlines()[-1].partition(": ")
    if kind.startswith("gan_jax.errors."):
        return f"--config={config_argument(argv)}: {message}"
    return f"--config: {config_argument(argv)} could not be loaded: {kind.rsplit('.', 1)[-1]}: {message}"


def config_argument(argv) -> str | None:
    """The value of --config (PATH[:VARIANT]) in argv, or None."""
    for i, a in enumerate(argv):
        if a == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--config="):
            return a.split("=", 1)[1]
    return None


# Experiment files merged into one that takes the setup as its argument: old file name -> its spec now.
MERGED_EXPERIMENTS = {"pacgan_ring.py": "experiments/pacgan.py:ring", "pacgan_grid.py": "experiments/pacgan.py:grid",
                      "gan_ring.py": "experiments/gan_mixture.py:ring",
                      "gan_grid.py": "experiments/gan_mixture.py:grid",
                      **{f"classifier_{d}.py": f"experiments/classifier.py:{d}"
                         for d in ("mnist", "fashion_mnist", "cifar10")}}


def check_config_file(argv) -> None:
    """Refuses, in one line, a config file that does not exist or does not parse, and a variant the
    file does not declare in VARIANTS (a typo such as ':smok' must not start the full run)."""
    value = config_argument(argv)
    if value is None:
        return
    path, _, variant = value.partition(":")
    if not os.path.isfile(path) and os.path.basename(path) in MERGED_EXPERIMENTS:
        now = MERGED_EXPERIMENTS[os.path.basename(path)] + (f",{variant}" if variant else "")
        fail(f"--config={value}: {path} is now part of {now.partition(':')[0]}; accepted: --config={now}")
    if not os.path.isfile(path):
        fail(f"--config={value}: no such file {path!r}; accepted: a Python file, e.g. experiments/quickstart.py")
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
    except (SyntaxError, UnicodeDecodeError, OSError) as e:
        where = f"{path}:{e.lineno}: " if isinstance(e, SyntaxError) else f"{path}: "
        fail(f"--config={value}: {where}{type(e).__name__}: {getattr(e, 'msg', None) or e}")
    from gan_jax.experiment_files import unknown_variants

    variants = ()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "VARIANTS" for t in node.targets):
            try:
                variants = tuple(ast.literal_eval(node.value))
            except ValueError:
                fail(f"{path}: VARIANTS must be a literal tuple of strings")
    unknown = unknown_variants(variant, variants)
    if unknown:
        fail(f"--config={value}: {path} has no variant {unknown[0]!r}; accepted: "
             + (", ".join(f"{path}:{v}" for v in variants) if variants else f"{path} (it declares no VARIANTS)"))


def unknown_field_message(argv, error: Exception) -> str:
    """'--config.model.widht=3' -> one line naming the override, the missing field and ml_collections'
    suggestion (its error text is a repr, sometimes nested, spread over two lines)."""
    text = str(error).replace("\\\\", "\\").replace("\\'", "'").replace("\\n", "\n")
    names = re.findall(r"'([A-Za-z_][A-Za-z0-9_]*)'", text)
    missing = names[0] if names else text.splitlines()[0]
    hint = re.search(r"Did you mean [^?]*\?", text)
    override = next((a.split("=")[0] for a in argv if a.startswith("--config.") and f".{missing}" in a.split("=")[0]),
                    None)
    return (f"{override}: " if override else "") + f"the config has no field {missing!r}" + \
        (f" ({hint.group(0)})" if hint else "")


def exit_without_teardown(status: int = 0) -> None:
    """Ends a finished sampling or evaluation process (its files written and closed) with exit 0,
    skipping the interpreter's teardown: XLA:CPU with 8 fake devices crashed there once (SIGSEGV
    after the last line was printed, CI 2026-12-01), failing a job whose work was done. Multi-host
    processes first leave the coordination service, which the skipped atexit hook would do.
    A run stopped by a full disk ends so too (status 2): tensorboardX's exit hook would retry
    writing the events that did not fit, and print a traceback after the one line."""
    import jax

    if jax.process_count() > 1:
        jax.distributed.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


# What an interrupted --mode=MODE leaves as it was (its output is written under a temporary name first).
UNCHANGED = {"sample": "samples.npz is unchanged", "eval": "no eval_step_XXXXXXX.json was written",
             "report": "report.html is unchanged"}


def interrupted(signum: int) -> None:
    """Ends a sampling or evaluation stopped by a signal (its temporary files removed by the unwinding)
    with one line on stderr and exit status 128 + signum, as the signal itself would, without the
    interpreter's teardown (see exit_without_teardown)."""
    name = signal.Signals(signum).name
    print(f"interrupted ({name}) during --mode={FLAGS.mode}: nothing was written; {UNCHANGED[FLAGS.mode]}",
          file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(128 + signum)


def run_sweep(workdir: str) -> None:
    """--sweep / --sweep_index: the runs of the experiment's get_sweep(), then a summary line per run."""
    from gan_jax import sweep_runner

    outcome = sweep_runner.run(config_argument(sys.argv), FLAGS.config, workdir, FLAGS.sweep_index)
    counts = {o: sum(1 for v in outcome.values() if v == o) for o in sorted(set(outcome.values()))}
    print("sweep: " + ", ".join(f"{n} {o}" for o, n in counts.items()) + f" (of {len(outcome)} runs here)", flush=True)
    diverged = [name for name, o in outcome.items() if o == "diverged"]
    if diverged:
        print(f"sweep: diverged (non-finite values; excluded from the results): {', '.join(diverged)}", flush=True)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every file operation at INFO
    from gan_jax import distributed, signals
    from gan_jax.disk import StoppedOnFullDisk
    from gan_jax.errors import UserError
    from gan_jax.memory import InsufficientMemory

    stop = signals.install()  # already installed when run as a script
    if FLAGS.mode != "train":  # sampling and evaluation write nothing a signal must wait for
        stop.uninstall()
        if FLAGS.mode in ("sample", "eval"):
            signals.raise_on_signals()  # their outputs are renamed into place: unwinding leaves nothing
        if stop.signal is not None:
            interrupted(signal.Signals[stop.signal])

    if FLAGS.workdir is None:
        fail("--workdir is required")
    if FLAGS.mode == "sample" and FLAGS.num_samples <= 0:
        fail(f"--num_samples={FLAGS.num_samples} is not accepted; accepted: a positive count")
    if FLAGS.labels is not None and FLAGS.mode != "sample":
        fail(f"--labels={FLAGS.labels} is not accepted with --mode={FLAGS.mode}; accepted: --labels with --mode=sample")
    if FLAGS.truncation is not None:
        if FLAGS.mode not in ("sample", "eval"):
            fail(f"--truncation={FLAGS.truncation} is not accepted with --mode={FLAGS.mode}; accepted: --truncation "
                 "with --mode=sample or --mode=eval")
        RUN_OVERRIDES.append(("eval.truncation", repr(FLAGS.truncation)))
    workdir = os.path.abspath(FLAGS.workdir)
    try:
        distributed.maybe_initialize(FLAGS.multihost, FLAGS.coordinator_address, FLAGS.num_processes,
                                     FLAGS.process_id, FLAGS.initialization_timeout)
        if FLAGS.mode == "train":
            if FLAGS.config is None:
                needs = "--config.FIELD overrides need --config" if RUN_OVERRIDES else "--config is required"
                fail(f"{needs} for --mode=train (e.g. --config experiments/quickstart.py)")
            from gan_jax.training import TrainingDiverged, train

            try:
                if FLAGS.sweep or FLAGS.sweep_index is not None:
                    run_sweep(workdir)
                else:
                    train(FLAGS.config, workdir)
            except TrainingDiverged as e:  # not the user's input: exit 1, the message last
                print(f"error: {e}", file=sys.stderr, flush=True)
                sys.exit(1)
            except signals.StoppedBeforeTraining as e:
                print(e, flush=True)
        elif FLAGS.mode == "sample":
            from gan_jax.sample import sample

            sample(workdir, FLAGS.num_samples, FLAGS.step, run_config(workdir), FLAGS.labels)
            exit_without_teardown()
        elif FLAGS.mode == "report":
            if RUN_OVERRIDES:
                fail(f"--config.{RUN_OVERRIDES[0][0]}: --mode=report takes no config overrides")
            from gan_jax import results, sweep
            from gan_jax.report import write_report

            if os.path.exists(os.path.join(workdir, sweep.SWEEP_FILE)):  # a sweep folder: its tables and plots
                for path in results.write_results(workdir):
                    print(f"wrote {path}")
            else:
                from gan_jax.pictures import write_pictures

                for path in write_pictures(workdir):  # the pictures that need the networks, shown in the report
                    print(f"wrote {path}")
                print(f"wrote {write_report(workdir)}")
                exit_without_teardown()
        else:
            from gan_jax.evaluate.run import evaluate

            evaluate(workdir, FLAGS.step, run_config(workdir))
            exit_without_teardown()
    except signals.Interrupted as e:
        interrupted(e.signum)
    except InsufficientMemory as e:
        overrides = [a for a in sys.argv if a.startswith("--config.")]
        fail(f"{e}" + (f" (set on the command line: {' '.join(overrides)})" if overrides else ""))
    except StoppedOnFullDisk as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        exit_without_teardown(2)
    except UserError as e:
        fail(str(e))


if __name__ == "__main__":
    from gan_jax.cpu_runtime import configure_process

    configure_process()  # XLA:CPU settings; may replace this process by one with tcmalloc preloaded
    import faulthandler

    faulthandler.enable()  # a crash in native code prints the Python stacks of every thread
    from gan_jax import signals

    signals.install()  # from here on SIGTERM/SIGINT/SIGHUP stop the run cleanly, also during start-up
    app.run(main, flags_parser=parse_flags)
