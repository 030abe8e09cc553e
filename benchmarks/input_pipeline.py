"""Input pipeline speed per data set: load time, and steady-state images/s at batch 256.

    python benchmarks/input_pipeline.py [--batch 256] [--seconds 2] [--datasets mnist,cifar10]

For each image data set: `load_s` is the first `load_arrays` in this process (in-process caches
cleared; stacked_mnist includes loading MNIST); `host_images_per_s` is `InputPipeline.get(step)`
in step order (the prefetch thread's rate once its queue is drained); `device_images_per_s` adds
what training does next: `parallel.global_batch_array` onto the mesh of all devices, and for
binarized_mnist the on-device Bernoulli draw of `Steps.real_examples`, waited for. ring8 and
grid25 are sampled on the device by a jitted `synthetic.sample_mixture` from the step key.
The last line is KEY=VALUE: min_images_per_s (the slowest device_images_per_s) and the load times."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import jax

from gan_jax import data, parallel
from gan_jax.config import base_config
from gan_jax.data import files, synthetic
from gan_jax.data.pipeline import InputPipeline
from gan_jax.errors import UserError
from gan_jax.objectives import build_steps

# name -> source
IMAGE_SETS = {"mnist": "files", "fashion_mnist": "files", "cifar10": "files", "celeba64": "files",
              "quickstart_digits": "embedded", "stacked_mnist": "files", "binarized_mnist": "files"}
MIXTURES = ("ring8", "grid25")


def rate(call: Callable[[int], object], batch: int, seconds: float) -> float:
    """Images/s of `call(step)` for steps 0, 1, ... over about `seconds` after a short warm-up."""
    for step in range(3):
        call(step)
    step, start = 3, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        call(step)
        step += 1
    return (step - 3) * batch / elapsed


def bench_images(name: str, source: str, batch: int, seconds: float, data_dir: str | None) -> dict:
    files.clear_cache()
    data._TFDS_CACHE.clear()
    start = time.perf_counter()
    images, _ = data.load_arrays(name, "train", source, data_dir)
    load_s = time.perf_counter() - start
    pipe = InputPipeline(images, batch, seed=0)
    host = rate(pipe.get, batch, seconds)
    pipe.close()

    sharding = parallel.batch_sharding(parallel.make_mesh(), 3 + images.ndim - 1, batch_axis=2)
    preprocess = None
    if data.get_dataset(name, source).binarize:
        cfg = base_config()
        cfg.objective, cfg.data.batch_size = "vae", batch
        builder = build_steps(cfg, {}, images.shape[1:], None, binarize=True)
        preprocess = jax.jit(lambda key, x: builder.real_examples(key, x[0, 0]))
        try:
            probe = images[: batch * jax.process_count()][None, None]
            preprocess(jax.random.key(0), parallel.global_batch_array(probe, sharding, batch_axis=2))
        except ValueError as e:  # see the report of issue [B]: vmap over a sharded batch in objectives/base.py
            print(f"{name}: on-device binarization fails on a sharded batch ({str(e).splitlines()[0]}); "
                  "timed without it", file=sys.stderr)
            preprocess = None

    pipe = InputPipeline(images, batch, seed=0)

    def to_device(step: int) -> None:
        x = parallel.global_batch_array(pipe.get(step), sharding, batch_axis=2)
        if preprocess is not None:
            x = preprocess(jax.random.fold_in(jax.random.key(0), step), x)
        x.block_until_ready()

    device = rate(to_device, batch, seconds)
    pipe.close()
    return {"load_s": load_s, "host_images_per_s": host, "device_images_per_s": device,
            "shape": "x".join(map(str, images.shape))}


def bench_mixture(name: str, batch: int, seconds: float) -> dict:
    key = jax.random.key(0)
    sample = jax.jit(lambda step: synthetic.sample_mixture(name, jax.random.fold_in(key, step), batch))
    device = rate(lambda step: sample(step).block_until_ready(), batch, seconds)
    return {"load_s": 0.0, "host_images_per_s": float("nan"), "device_images_per_s": device,
            "shape": f"{batch}x2"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per figure")
    parser.add_argument("--datasets", default=",".join([*IMAGE_SETS, *MIXTURES]))
    parser.add_argument("--data-dir", default=None, help=f"default: ${files.ENV_VAR} or ../shared/data")
    args = parser.parse_args(argv)

    print(f"# jax {jax.__version__}, {jax.device_count()} {jax.default_backend()} device(s), "
          f"batch {args.batch}")
    results = {}
    for name in args.datasets.split(","):
        try:
            if name in MIXTURES:
                r = bench_mixture(name, args.batch, args.seconds)
            elif name in IMAGE_SETS:
                r = bench_images(name, IMAGE_SETS[name], args.batch, args.seconds, args.data_dir)
            else:
                accepted = ", ".join([*IMAGE_SETS, *MIXTURES])
                raise UserError(f"--datasets: {name!r} is unknown; accepted: {accepted}")
        except UserError as e:  # a missing data set is reported and skipped, not fatal
            print(f"{name:18s} unavailable: {e}", file=sys.stderr)
            continue
        results[name] = r
        print(f"{name:18s} {r['shape']:>18s}  load_s={r['load_s']:6.2f}  "
              f"host_images_per_s={r['host_images_per_s']:>11,.0f}  "
              f"device_images_per_s={r['device_images_per_s']:>11,.0f}", flush=True)
    if not results:
        return 1
    slowest = min(results, key=lambda n: results[n]["device_images_per_s"])
    loads = " ".join(f"{n}_load_s={r['load_s']:.2f}" for n, r in results.items() if n not in MIXTURES)
    print(f"min_images_per_s={results[slowest]['device_images_per_s']:.0f} slowest={slowest} {loads}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
