"""The classifier objective and classifier-space evaluation: per-example random translations, labelled
pipeline batches, the classifier's update step, classifier files, data-parallel embedding (1 and 8
devices), the classifier-space scores, and end to end through launch.py (train, eval, sample)."""

import concurrent.futures
import json
import os
import pathlib
import subprocess
import sys

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_experiment, once_per_process, process_env

from gan_jax import data, parallel
from gan_jax.data.pipeline import InputPipeline
from gan_jax.errors import ConfigError, UserError
from gan_jax.evaluate import classify, metrics
from gan_jax.evaluate.inception import params_sha256
from gan_jax.models.classifier import ConvClassifier
from gan_jax.objectives.base import TrainState
from gan_jax.objectives.classifier import ClassifierSteps, random_shift

REPO = pathlib.Path(__file__).resolve().parents[1]


def one_device_mesh() -> jax.sharding.Mesh:
    return jax.make_mesh((1,), (parallel.DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,),
                         devices=jax.devices()[:1])


def tiny_classifier(shape=(8, 8, 1), num_classes=3, widths=(4,), feature_dim=8, seed=0, logit_scale=6.0):
    """(model config, net, variables as numpy), drawn in numpy on the structure of net.init (nothing to
    compile), the logits scaled up so that some examples are confidently classified (see `calibrated`)."""
    config = {"num_classes": num_classes, "widths": list(widths), "feature_dim": feature_dim}
    net = ConvClassifier(num_classes, tuple(widths), feature_dim)
    abstract = jax.eval_shape(net.init, jax.random.PRNGKey(0), jnp.zeros((1, *shape)))
    rng = np.random.default_rng(seed)
    flat = {}
    for path, leaf in flax.traverse_util.flatten_dict(flax.core.unfreeze(abstract)).items():
        size = leaf.shape
        if path[-1] == "kernel":
            v = rng.normal(0.0, 1.0 / np.sqrt(np.prod(size[:-1])), size) * (logit_scale if "Dense_1" in path else 1)
        elif path[-1] == "mean":
            v = rng.normal(0.0, 0.1, size)
        elif path[-1] in ("var", "scale"):
            v = rng.uniform(0.5, 1.5, size)
        else:
            v = rng.uniform(0.0, 0.5, size)
        flat[path] = v.astype(np.float32)
    return config, net, flax.traverse_util.unflatten_dict(flat)


_JITTED: dict = {}


def jitted(net, mode="eval"):
    """net.apply compiled once per (net, mode): 'eval' (features, logits), 'train' logits or 'stats', the
    batch statistics of a train-mode pass."""
    if (net, mode) not in _JITTED:
        fns = {"eval": lambda v, x: net.apply(v, x, train=False, with_features=True),
               "train": lambda v, x: net.apply(v, x, train=True, mutable=["batch_stats"])[0],
               "stats": lambda v, x: net.apply(v, x, train=True, mutable=["batch_stats"])[1]["batch_stats"]}
        _JITTED[net, mode] = jax.jit(fns[mode])
    return _JITTED[net, mode]


def plain_apply(net, variables, images_u8):
    """A second code path for embed: one net.apply on the whole set, softmax in numpy (float64)."""
    features, logits = jitted(net)(variables, jnp.asarray(images_u8, jnp.float32) / 127.5 - 1.0)
    logits = np.asarray(logits, np.float64)
    e = np.exp(logits - logits.max(1, keepdims=True))
    return np.asarray(features), e / e.sum(1, keepdims=True)


def calibrated(net, variables, images_u8):
    """`variables` with the running statistics of every BatchNorm set to those of `images_u8` (from one
    train-mode pass, whose update is 0.9 old + 0.1 batch), and the logits centred on them: every feature
    is active on part of the images (a well-conditioned covariance) and the classes are spread out."""
    x = jnp.asarray(images_u8, jnp.float32) / 127.5 - 1.0
    updated, old = jax.device_get(jitted(net, "stats")(variables, x)), variables["batch_stats"]
    stats = {layer: {"mean": (u["mean"] - 0.9 * old[layer]["mean"]) / 0.1,
                     "var": np.maximum((u["var"] - 0.9 * old[layer]["var"]) / 0.1, 1e-3)}
             for layer, u in updated.items()}
    out = {"params": jax.tree.map(np.copy, variables["params"]), "batch_stats": stats}
    features, _ = plain_apply(net, out, images_u8)
    last = max((k for k in out["params"] if k.startswith("Dense_")), key=lambda k: int(k.split("_")[1]))
    out["params"][last]["bias"] = (-features.mean(0) @ out["params"][last]["kernel"]).astype(np.float32)
    return jax.tree.map(lambda a: np.asarray(a, np.float32), out)


def images(n, shape=(8, 8, 1), seed=1):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


# --- launch.py, started in the background at the module's start --------------------------------

def launch_env(jax_cache):
    """One device (conftest.process_env), every compiled program kept in the module's cache."""
    return process_env(JAX_COMPILATION_CACHE_DIR=str(jax_cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")


def launch(env, *args):
    return subprocess.run([sys.executable, str(REPO / "launch.py"), *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def explain(out) -> str:
    return f"exit {out.returncode}:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"


EMBED_SCRIPT = """
import os, sys
assert os.environ["XLA_FLAGS"].endswith("--xla_force_host_platform_device_count=8")
import jax, numpy as np
from gan_jax.evaluate import classify, metrics
assert jax.device_count() == 8, jax.devices()
fnet = classify.load_classifier(sys.argv[1])
features, probs = classify.embed(fnet, np.load(sys.argv[2]), batch_size=16)
np.savez(sys.argv[3], features=features, probs=probs)
"""


def embed_on_8_devices(classifier: pathlib.Path, x: np.ndarray, folder: pathlib.Path):
    np.save(folder / "images.npy", x)
    env = process_env(8, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", EMBED_SCRIPT, str(classifier), str(folder / "images.npy"),
                          str(folder / "out.npz")], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    return out, folder / "out.npz"


@pytest.fixture(scope="module", autouse=True)
@once_per_process
def background(request, tmp_path_factory):
    """Subprocesses started when the module starts, so that their compilation overlaps the in-process
    tests (the fixtures `runs` and `tiny` hand them out): the 8-device embedding of the tiny classifier
    and, with the data, the launch.py chains: classifier:mnist,smoke trained, evaluated and sampled;
    dcgan_mnist:smoke trained, then evaluated in classifier space with a tiny 28x28x1 classifier file, with
    a CIFAR-shaped one, and with too few samples (`runs` skips without the data, like every test that
    reads it). Only what the selected tests use is started."""
    selected = [item for item in request.session.items if getattr(item, "module", None) is request.module]
    fixtures = {name for item in selected for name in item.fixturenames}
    data_dir = pathlib.Path(os.environ.get("GAN_JAX_DATA") or REPO.parent / "shared" / "data")
    root = tmp_path_factory.mktemp("classifier")
    env = launch_env(root / "jax_cache")
    classifier_dir, dcgan_dir = root / "classifier", root / "dcgan"
    files: concurrent.futures.Future = concurrent.futures.Future()

    def classifier_chain():
        out = {"train": launch(env, "--config", "experiments/classifier.py:mnist,smoke", "--workdir", classifier_dir,
                               f"--config.data.dir={data_dir}")}
        if out["train"].returncode == 0:
            out["eval"] = launch(env, "--mode=eval", "--workdir", classifier_dir)
            out["sample"] = launch(env, "--mode=sample", "--workdir", classifier_dir, "--num_samples", 8)
            export = [sys.executable, "-m", "gan_jax.evaluate.classify", str(classifier_dir)]
            run = lambda *extra: subprocess.run([*export, *extra], cwd=REPO, env=env, capture_output=True,  # noqa: E731
                                                text=True, timeout=600)
            out["export_over_shipped"] = run()
            out["export"] = run("--out", str(root / "exported.npz"))
        return out

    dcgan = ["--config", "experiments/dcgan_mnist.py:smoke", "--workdir", dcgan_dir, f"--config.data.dir={data_dir}",
             "--config.train.steps=2", "--config.train.checkpoint_every=2", "--config.train.sample_every=2"]
    evaluation = ["--mode=eval", "--config.eval.metrics=classifier_space", "--config.eval.num_samples=300",
                  "--config.eval.num_examples=300"]

    def dcgan_chain():
        out = {"train": launch(env, *dcgan)}
        if out["train"].returncode == 0:
            mnist_file, cifar_file = files.result()["mnist_tiny"][0], files.result()["cifar_tiny"][0]
            out["eval"] = launch(env, *dcgan, *evaluation, f"--config.eval.classifier={mnist_file}")
            out["wrong_shape"] = launch(env, *dcgan, *evaluation, f"--config.eval.classifier={cifar_file}")
            # Fewer samples than the classifier has features (16): no covariance for the FID.
            out["few_samples"] = launch(env, *dcgan, *evaluation, f"--config.eval.classifier={mnist_file}",
                                        "--config.eval.num_samples=10")
        return out

    # Not a `with` block: the threads outlive the fixture's call (the process joins them at exit).
    pool = concurrent.futures.ThreadPoolExecutor(3)
    started = {"classifier_dir": classifier_dir, "dcgan_dir": dcgan_dir}
    try:
        if "runs" in fixtures and data_dir.is_dir():
            started["classifier"], started["dcgan"] = pool.submit(classifier_chain), pool.submit(dcgan_chain)
            started["files"] = classifier_files(root, data_dir)
            files.set_result(started["files"])
        if "tiny" in fixtures:  # the tiny 8x8x1 classifier of the in-process tests, calibrated, in a file
            config, net, variables = tiny_classifier()
            variables = calibrated(net, variables, images(120, seed=5))
            path = root / "tiny.npz"
            started["tiny"] = (path, net, variables, classify.save_classifier(path, config, (8, 8, 1), variables))
            if any(item.originalname == "test_embed_on_8_devices_equals_1_device" for item in selected):
                (root / "embed8").mkdir()
                started["embed8"] = pool.submit(embed_on_8_devices, path, images(37, seed=4), root / "embed8")
        return started
    finally:
        pool.shutdown(wait=False)
        if not files.done():  # the dcgan chain must not wait for ever
            files.set_exception(RuntimeError("the classifier files were not written"))

def classifier_files(root: pathlib.Path, data_dir: pathlib.Path) -> dict:
    """{name: (path, SHA-256)}: a tiny 28x28x1 classifier calibrated on MNIST test digits (features active
    on them: a well-conditioned covariance for the FID) and a CIFAR-shaped one."""
    reference, _ = data.load_arrays("mnist", "test", "files", str(data_dir))
    written = {}
    for name, shape in (("mnist_tiny", (28, 28, 1)), ("cifar_tiny", (32, 32, 3))):
        config, net, variables = tiny_classifier(shape, num_classes=10, feature_dim=16, seed=3)
        if name == "mnist_tiny":
            variables = calibrated(net, variables, reference[:300])
        written[name] = (root / f"{name}.npz", classify.save_classifier(root / f"{name}.npz", config, shape, variables))
    return written


@pytest.fixture(scope="module")
@once_per_process
def tiny(background):
    """A tiny 8x8x1 classifier, calibrated, saved to a file: (path, net, variables, SHA-256 from save)."""
    return background["tiny"]


@pytest.fixture(scope="module")
@once_per_process
def runs(data_dir, background):
    """The finished launch.py chains (skipped without the data, like every test that reads it)."""
    return {**background, "classifier": background["classifier"].result(), "dcgan": background["dcgan"].result(),
            "data_dir": data_dir}


# --- random_shift ---------------------------------------------------------------------------------

def shift_reference(key, x, max_shift, ids):
    """numpy: pad with -1, slice at the offset drawn from fold_in(key, id)."""
    s, (h, w) = max_shift, x.shape[1:3]
    padded = np.pad(np.asarray(x), ((0, 0), (s, s), (s, s), (0, 0)), constant_values=-1.0)
    out = []
    for image, i in zip(padded, ids, strict=True):
        dy, dx = np.asarray(jax.random.randint(jax.random.fold_in(key, int(i)), (2,), 0, 2 * s + 1))
        assert 0 <= dy <= 2 * s and 0 <= dx <= 2 * s
        out.append(image[dy:dy + h, dx:dx + w])
    return np.stack(out)


shift = jax.jit(random_shift, static_argnums=2)
SHIFT_INPUT = np.random.default_rng(0).uniform(-1, 1, (16, 7, 5, 2)).astype(np.float32)


@pytest.mark.parametrize("max_shift", [1, 2])
def test_random_shift_matches_numpy_pad_and_slice(max_shift):
    key, ids = jax.random.PRNGKey(7), np.arange(10, 26)
    out = np.asarray(shift(key, SHIFT_INPUT, max_shift, ids))
    np.testing.assert_array_equal(out, shift_reference(key, SHIFT_INPUT, max_shift, ids))
    # Keyed by example id, not by position in the batch: the same examples in another order (or on
    # another device) get the same shifts.
    order = np.random.default_rng(1).permutation(16)
    np.testing.assert_array_equal(np.asarray(shift(key, SHIFT_INPUT[order], max_shift, ids[order])), out[order])


def test_random_shift_zero_is_identity_and_shifts_differ_between_examples():
    key = jax.random.PRNGKey(3)
    np.testing.assert_array_equal(np.asarray(shift(key, SHIFT_INPUT, 0, np.arange(16))), SHIFT_INPUT)
    same = np.repeat(SHIFT_INPUT[:1], 16, axis=0)  # one image 16 times: only the per-example shifts differ
    out = np.asarray(shift(key, same, 2, np.arange(16)))
    assert len({o.tobytes() for o in out}) > 4, "examples should get different shifts"
    np.testing.assert_array_equal(out, shift_reference(key, same, 2, np.arange(16)))


# --- the labelled input pipeline ------------------------------------------------------------------

def test_pipeline_keeps_labels_with_their_images_across_steps_and_processes():
    n = 50
    index_images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 3, 3, 1)).copy()
    labels = (np.arange(n) * 7 + 3) % 10
    with InputPipeline((index_images, labels), 12, seed=5, steps_per_call=2) as whole:
        parts = [InputPipeline((index_images, labels), 12, seed=5, steps_per_call=2, process_index=p,
                               process_count=3, prefetch=0) for p in range(3)]
        for step in (0, 2, 4, 8, 10):  # calls of 24 examples over epochs of 50, with a jump
            got_images, got_labels = whole.get(step)
            assert got_images.shape == (2, 1, 12, 3, 3, 1) and got_labels.shape == (2, 1, 12)
            index = got_images[..., 0, 0, 0].astype(np.int64)
            np.testing.assert_array_equal(index, whole.indices(step))
            np.testing.assert_array_equal(got_labels, (index * 7 + 3) % 10)
            sliced = [p.batch(step) for p in parts]
            for s in sliced:
                assert s[0].shape == (2, 1, 4, 3, 3, 1)
                np.testing.assert_array_equal(s[1], (s[0][..., 0, 0, 0].astype(np.int64) * 7 + 3) % 10)
            np.testing.assert_array_equal(np.concatenate([s[0] for s in sliced], axis=2), got_images)
            np.testing.assert_array_equal(np.concatenate([s[1] for s in sliced], axis=2), got_labels)


# --- the update step ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
@once_per_process
def toy_steps():
    """ClassifierSteps of the tiny 8x8x1, 3-class net (no augmentation, constant learning rate), its
    compiled train step and a state of numpy-drawn variables: shared by the step tests, compiled once."""
    cfg = load_experiment("classifier:mnist,smoke")
    cfg.data.random_shift, cfg.data.random_flip = 0, False
    cfg.optimizer.learning_rate, cfg.optimizer.schedule, cfg.train.steps = 1e-2, "constant", 100
    _, net, variables = tiny_classifier(seed=1)
    steps = ClassifierSteps(cfg, {"classifier": net}, (8, 8, 1))
    params, stats = {"classifier": variables["params"]}, {"classifier": variables["batch_stats"]}
    state = TrainState(jnp.zeros((), jnp.int32), jax.random.PRNGKey(0), params, stats,
                       {"classifier": jax.jit(steps.optimizers["classifier"].init)(variables["params"])})
    return net, jax.jit(steps.train_step), state


def test_train_step_loss_is_the_cross_entropy_of_a_separate_apply(toy_steps):
    net, step, state = toy_steps
    batch = (images(16, seed=2)[None], np.random.default_rng(0).integers(0, 3, (1, 16)).astype(np.int32))
    new_state, metrics = step(state, batch)
    x = batch[0][0].astype(np.float32) / 127.5 - 1.0  # random_shift=0: the augmented batch is the batch
    variables = {"params": state.params["classifier"], "batch_stats": state.batch_stats["classifier"]}
    logits, labels = np.asarray(jitted(net, "train")(variables, x), np.float64), batch[1][0]
    top = logits.max(1)
    ce = top + np.log(np.exp(logits - top[:, None]).sum(1)) - logits[np.arange(16), labels]
    np.testing.assert_allclose(float(metrics["loss"]), ce.mean(), rtol=1e-5)
    assert float(metrics["accuracy"]) == np.mean(logits.argmax(1) == labels)
    assert bool(metrics["finite"]) and int(new_state.step) == 1


def test_a_few_steps_reduce_the_loss_on_a_separable_problem(toy_steps):
    _, step, state = toy_steps
    labels = np.tile([0, 1, 2, 0], 4).astype(np.int32)  # dark, grey and bright images
    base = np.array([10, 100, 190])[labels][:, None, None, None]
    noisy = base + np.random.default_rng(0).integers(0, 50, (16, 8, 8, 1))
    batch = (noisy.astype(np.uint8)[None], labels[None])
    losses = []
    for _ in range(15):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.5 * losses[0] and float(metrics["accuracy"]) == 1.0, losses


# --- classifier files -----------------------------------------------------------------------------

def test_classifier_file_round_trip(tiny):
    path, net, variables, sha = tiny
    fnet = classify.load_classifier(str(path))
    assert fnet.input_shape == (8, 8, 1) and fnet.name == "tiny"
    assert jax.tree.structure(fnet.variables) == jax.tree.structure(variables)
    for a, b in zip(jax.tree.leaves(fnet.variables), jax.tree.leaves(variables), strict=True):
        assert a.dtype == np.float32 and a.tobytes() == b.tobytes()
    assert fnet.sha256 == sha == params_sha256(variables)
    with np.load(path, allow_pickle=False) as f:  # readable without pickle: no object arrays
        saved = json.loads(str(f["__config__"]))
    assert saved == {"model": {"num_classes": 3, "widths": [4], "feature_dim": 8}, "input_shape": [8, 8, 1]}


@pytest.mark.parametrize("kind", ["missing", "other_npz", "text", "truncated"])
def test_bad_classifier_file_is_one_line_naming_the_path(kind, tiny, tmp_path):
    path = tmp_path / "bad.npz"
    if kind == "other_npz":
        np.savez(path, weights=np.zeros((3, 3), np.float32))
    elif kind == "text":
        path.write_text("not a classifier\n")
    elif kind == "truncated":  # an interrupted copy of a real classifier file
        whole = tiny[0].read_bytes()
        path.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(UserError) as e:
        classify.load_classifier(str(path))
    message = str(e.value)
    assert str(path) in message and "\n" not in message, message


# --- embed ----------------------------------------------------------------------------------------

def test_embed_equals_a_plain_apply(tiny):
    path, net, variables, _ = tiny
    x = images(37)  # not a multiple of the batch (16) nor of the device count (8)
    features, probs = classify.embed(classify.load_classifier(str(path)), x, one_device_mesh(), batch_size=16)
    assert features.shape == (37, 8) and probs.shape == (37, 3)
    assert features.dtype == probs.dtype == np.float32
    want_features, want_probs = plain_apply(net, variables, x)
    np.testing.assert_allclose(features, want_features, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probs, want_probs, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("bad", ["float32", "rgb", "size", "flat"])
def test_embed_refuses_wrong_images_naming_eval_classifier(bad, tiny):
    fnet = classify.load_classifier(str(tiny[0]))
    x = {"float32": images(4).astype(np.float32), "rgb": images(4, (8, 8, 3)), "size": images(4, (16, 16, 1)),
         "flat": images(4, (64,))}[bad]
    with pytest.raises(ConfigError, match=r"^eval\.classifier='tiny' takes uint8 images \(8, 8, 1\), got "):
        classify.embed(fnet, x, one_device_mesh())


def test_embed_on_8_devices_equals_1_device(tiny, background):
    out, result = background["embed8"].result()
    assert out.returncode == 0, out.stderr[-3000:]
    x = images(37, seed=4)  # what the subprocess embedded on 8 devices
    features, probs = classify.embed(classify.load_classifier(str(tiny[0])), x, one_device_mesh(), batch_size=16)
    with np.load(result) as eight:
        np.testing.assert_allclose(eight["features"], features, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(eight["probs"], probs, rtol=1e-5, atol=1e-7)


# --- score ----------------------------------------------------------------------------------------

def test_score_of_a_set_against_itself(tiny):
    fnet = classify.load_classifier(str(tiny[0]))
    x = images(120, seed=5)
    mesh = one_device_mesh()
    result = classify.score(fnet, [x[:50], x[50:]], x, mesh, batch_size=16)
    features, probs = classify.embed(fnet, x, mesh, batch_size=16)
    scale = float(np.var(features, axis=0).sum())  # FID is in squared feature units
    assert scale > 0 and abs(result["fid"]) < 1e-3 * scale, (result["fid"], scale)
    assert result["precision"] == 1.0 and result["recall"] == 1.0
    # The set against itself: every point lies in its own ball (coverage 1) and density is the mean number
    # of other points within each ball's radius over k: the brute-force count.
    d = np.sqrt(((features[:, None].astype(np.float64) - features[None]) ** 2).sum(-1))
    radii = np.sort(d, axis=1)[:, 5]
    assert result["coverage"] == 1.0
    assert result["density"] == pytest.approx(np.sum(d < radii[:, None]) / (5 * 120), abs=1e-6)
    assert result["samples"] == result["reference_images"] == 120
    assert result["classifier"] == "tiny" and result["classifier_sha256"] == tiny[3]
    confident = float(np.mean(probs.max(1) >= classify.CONFIDENCE))
    assert 0 < confident < 1, "the tiny classifier should be confident on some images only"
    assert result["confident_fraction"] == confident
    histogram = [int(np.sum(probs.argmax(1) == c)) for c in range(3)]
    assert result["class_histogram"] == histogram and sum(histogram) == 120 and min(histogram) > 0
    # KID and IS are the metric functions on these features and probabilities (the samples were
    # embedded in other chunks, so equal up to rounding); 1 <= IS <= 3 classes.
    kid = metrics.kernel_distance(features, features, seed=0)
    assert (result["kid"], result["kid_std"]) == pytest.approx(kid, rel=1e-4, abs=1e-6 * scale)
    inception_score = metrics.inception_score(probs)
    assert (result["is"], result["is_std"]) == pytest.approx(inception_score, rel=1e-5)
    assert 1.0 < result["is"] < 3.0


# --- through launch.py ----------------------------------------------------------------------------

def test_classifier_smoke_trains_and_evaluates_its_accuracy(runs):
    out = runs["classifier"]
    assert out["train"].returncode == 0, explain(out["train"])
    workdir = runs["classifier_dir"]
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    trained = [r for r in records if "loss" in r]
    assert [r["step"] for r in trained] == [2, 4], records
    assert all(np.isfinite(r["loss"]) and 0 <= r["accuracy"] <= 1 for r in trained), trained
    assert (workdir / "checkpoints" / "4").is_dir()
    from test_launch import check_trained  # it trains as every smoke variant must; test_launch leaves it to us

    check_trained(workdir)

    assert out["eval"].returncode == 0, explain(out["eval"])
    result = json.loads((workdir / "eval_step_0000004.json").read_text())
    accuracy = result["classifier_accuracy"]
    assert result["step"] == 4 and accuracy["split"] == "test" and accuracy["examples"] == 500
    # The recount: the checkpoint's classifier applied to the first 500 test images in this process.
    from gan_jax.sampling import restore

    exp, step, state = restore(str(workdir), None)
    assert step == 4
    variables = jax.device_get({"params": state.params["classifier"], "batch_stats": state.batch_stats["classifier"]})
    test_images, test_labels = data.load_arrays("mnist", "test", "files", str(runs["data_dir"]))
    _, probs = plain_apply(exp.nets["classifier"], variables, test_images[:500])
    labels = test_labels[:500]
    top2 = np.sort(probs, axis=1)[:, -2:]
    near_ties = int(np.sum(top2[:, 1] - top2[:, 0] < 1e-5))  # may go either way between two computations
    assert abs(accuracy["accuracy"] - np.mean(probs.argmax(1) == labels)) <= near_ties / 500, (accuracy, near_ties)
    np.testing.assert_allclose(accuracy["cross_entropy_nats"], -np.log(probs[np.arange(500), labels]).mean(),
                               rtol=1e-4)
    assert accuracy["params_sha256"] == params_sha256(variables)


def test_export_writes_the_run_and_never_silently_replaces_a_shipped_classifier(runs):
    out = runs["classifier"]
    assert out["train"].returncode == 0, explain(out["train"])
    shipped = classify.classifier_path("mnist")
    refused = out["export_over_shipped"]
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 1 and len(lines) == 1 and "not to the shipped mnist classifier's" in lines[0], \
        explain(refused)
    assert classify.load_classifier("mnist").sha256 == classify.SHIPPED_SHA256["mnist"]  # untouched
    assert out["export"].returncode == 0, explain(out["export"])
    exported = classify.load_classifier(str(runs["classifier_dir"].parent / "exported.npz"))
    assert exported.sha256 in out["export"].stdout and exported.sha256 != classify.SHIPPED_SHA256["mnist"]
    assert shipped.is_file()


def test_classifier_run_samples_nothing(runs):
    out = runs["classifier"]
    assert out["train"].returncode == 0, explain(out["train"])
    sample = out["sample"]
    lines = sample.stderr.strip().splitlines()
    assert sample.returncode == 2 and len(lines) == 1 and "generates nothing" in lines[0], explain(sample)
    assert not (runs["classifier_dir"] / "samples.npz").exists()


def test_dcgan_eval_in_classifier_space_names_the_classifier_file(runs):
    out = runs["dcgan"]
    assert out["train"].returncode == 0, explain(out["train"])
    assert out["eval"].returncode == 0, explain(out["eval"])
    result = json.loads((runs["dcgan_dir"] / "eval_step_0000002.json").read_text())
    space = result["classifier_space"]
    for k in ("fid", "kid", "precision", "recall", "is"):
        assert isinstance(space[k], float) and np.isfinite(space[k]), (k, space)
    assert 0 <= space["precision"] <= 1 and 0 <= space["recall"] <= 1 and 1 <= space["is"] <= 10 and space["fid"] > 0
    assert space["samples"] == 300 and space["reference_images"] == 300 and sum(space["class_histogram"]) == 300
    path, sha = runs["files"]["mnist_tiny"]
    assert space["classifier_sha256"] == sha == classify.load_classifier(str(path)).sha256


def test_wrong_shaped_classifier_is_one_line_exit_2(runs):
    out = runs["dcgan"]
    assert out["train"].returncode == 0, explain(out["train"])
    wrong = out["wrong_shape"]
    lines = wrong.stderr.strip().splitlines()
    assert wrong.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), explain(wrong)
    assert "classifier_space" in lines[0] and "eval.classifier" in lines[0], lines


def test_fewer_samples_than_features_is_one_line_exit_2(runs):
    """eval.num_samples=10 against a classifier of 16 features: the FID has no covariance; bad input,
    so one line naming the field, not a traceback."""
    out = runs["dcgan"]
    assert out["train"].returncode == 0, explain(out["train"])
    few = out["few_samples"]
    lines = few.stderr.strip().splitlines()
    assert few.returncode == 2 and len(lines) == 1 and "eval.num_samples" in lines[0], explain(few)
