"""`python -m gan_jax.evaluate SOURCE_A [SOURCE_B] [--features=...] [--metrics=...] [--num=N] [--save_stats FILE]`:
the scores of SOURCE_A's images against SOURCE_B's (gan_jax/evaluate/scoring.py says what a source is),
as one JSON object on stdout and a readable line per score on stderr. Bad input: one line
`error: ...` on stderr, exit status 2 (as launch.py)."""

import argparse
import contextlib
import json
import os
import sys


def parse_args(argv=None) -> argparse.Namespace:
    from gan_jax.evaluate import classify
    from gan_jax.evaluate.scoring import RUN_SAMPLES
    from gan_jax.ops.resize import DEFAULT_RESIZE, RESIZES

    p = argparse.ArgumentParser(prog="python -m gan_jax.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("source_a", metavar="SOURCE_A", help="the samples: a run folder, a samples .npz, a stats "
                   "file, a folder of PNG/JPEG images, or DATA:SPLIT (mnist:test)")
    p.add_argument("source_b", metavar="SOURCE_B", nargs="?", help="the reference, as SOURCE_A (may be left out "
                   "with --save_stats)")
    p.add_argument("--features", help=f"{', '.join(classify.shipped_classifiers())} (the shipped classifiers), "
                   "inception, or PATH.npz (a classifier file); default: the classifier of the data the sources name")
    p.add_argument("--metrics", help=f"comma-separated: {', '.join(classify.SCORES)} (default: all; fid alone with "
                   "a stats file)")
    p.add_argument("--num", type=int, help=f"at most N images of each source (a run draws N; default {RUN_SAMPLES:,})")
    p.add_argument("--save_stats", metavar="FILE", help="write SOURCE_B's feature statistics (SOURCE_A's when alone) "
                   "to FILE (.npz), a source for later FIDs")
    p.add_argument("--resize", help=f"Inception's 299x299 resize: {', '.join(RESIZES)} (gan_jax/ops/resize.py; "
                   f"default: a stats file's, else {DEFAULT_RESIZE})")
    p.add_argument("--inception_weights", default="download",
                   help="pytorch-fid's weight file, or 'download' (once, into ~/.cache/gan_jax)")
    p.add_argument("--seed", type=int, default=0, help="KID's subset draws")
    p.add_argument("--batch_size", type=int, default=500, help="images per embedding call")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from gan_jax.errors import UserError
    from gan_jax.evaluate.scoring import score, summary_lines

    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout holds the JSON object alone
            result = score(args.source_a, args.source_b, features=args.features, metrics=args.metrics,
                           num=args.num, save_stats=args.save_stats, resize=args.resize,
                           inception_weights=args.inception_weights, seed=args.seed, batch_size=args.batch_size)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    print("\n".join(summary_lines(result)), file=sys.stderr, flush=True)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    from gan_jax.cpu_runtime import configure_process

    configure_process()  # XLA:CPU settings, tcmalloc (as launch.py)
    status = main()
    # Ends without the interpreter's teardown, as launch.py's sampling and evaluation do
    # (exit_without_teardown: XLA:CPU with several fake devices once crashed there, after the work).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
