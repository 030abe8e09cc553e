"""Steady-state training speed of one workload, in the format of ../shared/bench:

    python benchmarks/bench.py dcgan_mnist [--batch 256] [--steps 10]
    python benchmarks/bench.py gan_ring --runs 8        # 8 seeds at once (vmapped), like peer --runs 8
    python benchmarks/bench.py eval_fid_mnist           # classifier-space FID vs generation (eval_fid.py)
    python benchmarks/bench.py eval_floor_mnist         # the metrics of 10,000 train vs the test images

The step timed is the one training runs, jitted with the state donated: with --runs 1 the
objective's multi_step (gan_jax.objectives' Steps.multi_step, as training.py calls it), with
--runs R > 1 gan_jax.vectorized.vectorized_step over R stacked states (seeds 0..R-1), stacked
hyperparameters and all runs active (as a vectorized sweep trains). One D and one G update per
step, on random uint8 batches already on the device (the peers time random batches too).
Compilation is excluded from ms_per_step and printed as compile_s. gflop_per_step is XLA's cost
analysis of a 1-update program (of the R runs together): a lax.scan's body enters the cost analysis
once, whatever its length. The last line is KEY=VALUE: ms_per_step (a step of all R runs),
images_per_s (all runs' real batches), run_steps_per_s (R / the step time), compile_s."""

import argparse
import importlib.util
import os
import pathlib
import time

import jax
import numpy as np

from gan_jax import cpu_runtime, models
from gan_jax.objectives import build_steps
from gan_jax.vectorized import vectorized_step

REPO = pathlib.Path(__file__).resolve().parents[1]

# workload -> (experiment, overrides, example shape, synthetic mixture)
# dcgan_mnist runs the tutorial's settings (D dropout 0.3, no moving average), as the peers do.
TUTORIAL = {"data.batch_size": 256, "model.dropout_rate": 0.3, "train.ema_decay": 0.0}
WORKLOADS = {
    "dcgan_mnist": ("dcgan_mnist", TUTORIAL, (28, 28, 1), None),
    # The TensorFlow peer's step: D and G from one forward each (train.update_rule='simultaneous').
    "dcgan_mnist_simultaneous": ("dcgan_mnist", {**TUTORIAL, "train.update_rule": "simultaneous"},
                                 (28, 28, 1), None),
    "dcgan32": ("dcgan_cifar10", {"data.batch_size": 64, "data.random_flip": False}, (32, 32, 3), None),
    "dcgan64": ("dcgan_celeba64", {"data.batch_size": 64, "data.random_flip": False}, (64, 64, 3), None),
    "gan_ring": ("gan_mixture", {"data.batch_size": 100}, (2,), "ring8"),  # its default mixture: ring
    "vae_mnist": ("vae_mnist", {"data.batch_size": 128}, (28, 28, 1), None),
    # R3GAN's step (RpGAN + R1 + R2: a double backward through grouped convolutions), unconditional, at the
    # short runs' width 32 and batch 16.
    "r3gan32": ("r3gan_cifar10", {"data.batch_size": 16, "data.random_flip": False, "model.num_classes": 0,
                                  "train.generated_labels": "uniform", "model.generator_width": 32,
                                  "model.discriminator_width": 32, "model.cardinality": 4,
                                  "model.blocks_per_stage": 1}, (32, 32, 3), None),
    # ... and at the CIFAR10 preset's widths (768, 96 groups, 2 blocks a stage), batch 4.
    "r3gan768": ("r3gan_cifar10", {"data.batch_size": 4, "data.random_flip": False, "model.num_classes": 0,
                                   "train.generated_labels": "uniform"}, (32, 32, 3), None),
}


def experiment_config(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("workload", choices=sorted(WORKLOADS) + ["matmul", "eval_fid_mnist", "eval_floor_mnist",
                                                            "eval_floor_fashion_mnist", "eval_floor_cifar10"])
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="timed steps (default: ~20 s of work)")
    p.add_argument("--runs", type=int, default=1, help="independent seeds trained at once (vmap)")
    p.add_argument("--steps_per_call", type=int, default=None)
    p.add_argument("--conv_impl", default="auto", choices=["auto", "lax", "cpu_fast", "dft"])
    p.add_argument("--compute_dtype", default="float32", help="train.compute_dtype (mixed_precision.py)")
    p.add_argument("--grad_accumulation", type=int, default=1, help="train.grad_accumulation (micro-batches)")
    a = p.parse_args()
    if a.workload == "matmul":
        return matmul_rate()
    if a.workload == "eval_fid_mnist":
        import eval_fid  # benchmarks/ is on sys.path when this file runs as a script

        return eval_fid.run(experiment_config("dcgan_mnist"))
    if a.workload.startswith("eval_floor_"):
        import eval_fid

        return eval_fid.floor(a.workload.removeprefix("eval_floor_"))

    experiment, overrides, shape, mixture = WORKLOADS[a.workload]
    cfg = experiment_config(experiment)
    for field, value in overrides.items():
        section, key = field.split(".")
        cfg[section][key] = value
    if a.batch:
        cfg.data.batch_size = a.batch
    if a.steps_per_call:
        cfg.train.steps_per_call = a.steps_per_call
    cfg.model.conv_impl = a.conv_impl
    cfg.train.compute_dtype = a.compute_dtype
    cfg.train.grad_accumulation = a.grad_accumulation
    k, batch = cfg.train.steps_per_call, cfg.data.batch_size
    builder = build_steps(cfg, models.build(cfg.model, shape), shape, mixture, a.workload == "vae_mnist")

    state, data, step, one_update = program(builder, a.runs, k, batch, shape, cfg.train.n_critic, mixture is None)
    t = time.perf_counter()
    compiled = step(k).lower(state, *data).compile()
    compile_s = time.perf_counter() - t
    # A lax.scan's body enters XLA's cost analysis once, not K times: count one update's program.
    flops = flop_count(compiled if k == 1 else step(1).lower(state, *one_update).compile())
    for _ in range(2):  # warm-up
        state, metrics = compiled(state, *data)
    jax.block_until_ready(state)
    t = time.perf_counter()
    state, metrics = compiled(state, *data)
    jax.block_until_ready(state)
    one_call = time.perf_counter() - t
    calls = a.steps // k if a.steps else max(3, int(20.0 / max(one_call, 1e-4)))
    t = time.perf_counter()
    for _ in range(calls):
        state, metrics = compiled(state, *data)
    jax.block_until_ready(state)
    seconds = (time.perf_counter() - t) / (calls * k)
    print(f"workload={a.workload} batch={batch} runs={a.runs} steps_per_call={k} timed_steps={calls * k} "
          f"conv_impl={a.conv_impl} backend={jax.default_backend()} devices={jax.device_count()} "
          f"tcmalloc={cpu_runtime.tcmalloc_loaded()} xla_flags='{os.environ.get('XLA_FLAGS', '')}' "
          f"gflop_per_step={flops / 1e9:.3f} achieved_gflop_per_s={flops / 1e9 / seconds:.1f}")
    memory = compiled.memory_analysis()  # XLA's buffer assignment: the step's temporaries (activations, ...)
    temp_mb = memory.temp_size_in_bytes / 2**20 if memory is not None else float("nan")
    print(f"ms_per_step={seconds * 1e3:.2f} images_per_s={a.runs * batch / seconds:.1f} "
          f"run_steps_per_s={a.runs / seconds:.1f} compile_s={compile_s:.2f} temp_mb={temp_mb:.1f} "
          f"grad_accumulation={a.grad_accumulation} compute_dtype={a.compute_dtype}")


def program(builder, runs: int, k: int, batch: int, shape: tuple[int, ...], n_critic: int, images: bool):
    """What training runs, as (state, args after the state, step(length) -> jitted step, the args of a
    1-update call). 1 run: the objective's multi_step with the hyperparameters as arrays (training.py).
    R > 1 runs: gan_jax.vectorized.vectorized_step over R stacked states (seeds 0..R-1), stacked
    hyperparameters and active = all True (vectorized.py's _Runs)."""
    hp = builder.hyperparameters()
    rng = np.random.RandomState(0)
    data = rng.randint(0, 256, (k, n_critic, batch, *shape), dtype=np.uint8) if images else None
    if runs == 1:
        state = jax.jit(builder.init_state)(0)

        def step(length):
            return jax.jit(lambda s, b, h: builder.multi_step(s, b, h, length), donate_argnums=0)

        return (state, jax.device_put((data, hp)), step,
                jax.device_put((None if data is None else data[:1], hp)))
    state = jax.jit(jax.vmap(builder.init_state))(np.arange(runs))
    hps = jax.tree.map(lambda *v: np.stack(v), *[hp] * runs)
    active = np.ones(runs, bool)
    stacked = None if data is None else np.broadcast_to(data, (runs, *data.shape))

    def step(length):
        return jax.jit(vectorized_step(builder, length), donate_argnums=0)

    return (state, jax.device_put((stacked, hps, active)), step,
            jax.device_put((None if stacked is None else stacked[:, :1], hps, active)))


def flop_count(compiled) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", 0.0)) if cost else 0.0


def matmul_rate(n: int = 2048, repeats: int = 10) -> None:
    """The machine's float32 matrix-product rate through XLA (the ceiling for dot-lowered steps)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n))
    f = jax.jit(lambda x: x @ x)
    jax.block_until_ready(f(a))
    t = time.perf_counter()
    for _ in range(repeats):
        out = f(a)
    jax.block_until_ready(out)
    seconds = (time.perf_counter() - t) / repeats
    print(f"matmul n={n} ms={seconds * 1e3:.1f}")
    print(f"gflop_per_s={2 * n**3 / seconds / 1e9:.1f}")


if __name__ == "__main__":
    cpu_runtime.configure_process()  # time what launch.py runs (see gan_jax/cpu_runtime.py to opt out)
    main()
