"""`python benchmarks/bench.py eval_fid_mnist`: the cost of scoring samples in classifier space.

Times, alternately over `rounds`, (a) generating 10,000 dcgan_mnist samples as the evaluation does
(Experiment.sample in chunks, converted to uint8), and (b) the same generation plus classifier-space
FID against the 10,000 MNIST test images (features from the shipped mnist classifier, the generated
set's statistics accumulated on the device). The target is (b) / (a) <= 2. The test images' features
are computed once per process (classify.reference_features), as in training's evaluations; that
first computation is printed separately.
Needs MNIST under GAN_JAX_DATA (default ../shared/data). Last line: KEY=VALUE."""

import os
import time

import numpy as np

from gan_jax import data
from gan_jax.evaluate import classify, metrics
from gan_jax.experiment import Experiment
from gan_jax.grids import to_uint8
from gan_jax.sampling import sample_chunks


def run(cfg, num_samples: int = 10_000, rounds: int = 3) -> None:
    import jax

    cfg.data.dir = os.environ.get("GAN_JAX_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    exp = Experiment(cfg, load_train_data=False)
    state = exp.init_state()
    test_images, _ = data.load_arrays("mnist", "test", "files", cfg.data.dir)
    fnet = classify.load_classifier("mnist")
    key = jax.random.PRNGKey(0)

    def generate():
        return [to_uint8(c, exp.unit_range) for c in sample_chunks(exp, state, key, num_samples)]

    def generate_and_fid():
        stats = metrics.FeatureStats()
        for chunk in generate():
            stats.update(classify.embed(fnet, chunk, exp.mesh, cfg.eval.batch_size)[0])
        reference = classify.reference_features(fnet, test_images, exp.mesh, cfg.eval.batch_size)
        return metrics.frechet_distance(stats, reference)

    t = time.perf_counter()
    generate_and_fid()  # compiles both and computes the reference features
    first_s = time.perf_counter() - t
    times = {"generate": [], "generate_and_fid": []}
    for _ in range(rounds):
        for name, fn in (("generate", generate), ("generate_and_fid", generate_and_fid)):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    a, b = np.median(times["generate"]), np.median(times["generate_and_fid"])
    print(f"workload=eval_fid_mnist samples={num_samples} reference=10000 rounds={rounds} "
          f"classifier_sha256={fnet.sha256[:16]} devices={jax.device_count()} backend={jax.default_backend()}")
    print(f"first_call_s={first_s:.2f} generate_s={a:.2f} generate_and_fid_s={b:.2f} ratio={b / a:.2f}")


def floor(dataset: str, num_samples: int = 10_000) -> None:
    """The metrics' floor: `num_samples` training images scored like generated ones against the test split."""
    data_dir = os.environ.get("GAN_JAX_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    train, _ = data.load_arrays(dataset, "train", "files", data_dir)
    test, _ = data.load_arrays(dataset, "test", "files", data_dir)
    fnet = classify.load_classifier(classify.CLASSIFIER_FOR_DATA[dataset])
    result = classify.score(fnet, [train[:num_samples]], test)
    print(f"workload=eval_floor_{dataset} samples=train[:{num_samples}] reference=test")
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()
                   if k != "class_histogram"))
