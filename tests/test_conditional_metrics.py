"""The conditional evaluators (gan_jax/evaluate/conditional.py): `conditional` (conditional accuracy,
intra-class FID) and `cas` (the Classification Accuracy Score), on a cdcgan_mnist smoke run trained once
through launch.py, whose generator is replaced by "generators" of real MNIST digits: the digits of the
requested class give the classifier's own accuracy on them and the FID of those digits, computed here in
float64 numpy; digits of the next class give accuracy 0 (the control); for CAS, the training digits of the
requested class give the accuracy of the classifier objective trained on them through launch's training
loop, and digits of random classes give chance."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, once_per_process, process_env

from gan_jax import data
from gan_jax.errors import ConfigError
from gan_jax.evaluate import classify, conditional, evaluators
from gan_jax.experiment import Experiment
from gan_jax.sampling import restore
from gan_jax.training import train

K = 10
NUM_SAMPLES = 1300  # 130 a class: more than the mnist classifier's 128 feature dimensions
NUM_EXAMPLES = 1600  # MNIST's first 1,527 test digits hold 129 of each class
CAS_STEPS, CAS_BATCH = 60, 64
EVAL_FIELDS = {"eval.num_samples": NUM_SAMPLES, "eval.num_examples": NUM_EXAMPLES, "eval.cas_steps": CAS_STEPS,
               "eval.cas_batch_size": CAS_BATCH}


@pytest.fixture(scope="module")
@once_per_process
def smoke_run(data_dir, tmp_path_factory):
    """experiments/cdcgan_mnist.py:smoke trained through launch.py with both evaluators at its last step:
    (workdir, its metrics.jsonl records)."""
    workdir = tmp_path_factory.mktemp("conditional") / "cdcgan"
    overrides = [f"--config.{k}={v}" for k, v in EVAL_FIELDS.items()]
    out = subprocess.run([sys.executable, str(REPO / "launch.py"), "--config", "experiments/cdcgan_mnist.py:smoke",
                          "--workdir", str(workdir), "--config.eval.metrics=conditional,cas", "--config.eval.every=4",
                          *overrides], cwd=REPO, env=process_env(), capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return workdir, records


@pytest.fixture(scope="module")
@once_per_process
def run(smoke_run):
    """(experiment, step, state) of the smoke run's last checkpoint, and the mnist classifier."""
    exp, step, state = restore(str(smoke_run[0]), None)
    return exp, step, state, classify.load_classifier("mnist")


def digits_generator(images: np.ndarray, labels: np.ndarray, class_of=lambda c, rng: c):
    """An Experiment.sample that returns, for a sample of class c, the next digit (in order, cycling) of
    class class_of(c, rng) among `images`, in model range."""
    by_class = [images[labels == c] for c in range(K)]
    taken = np.zeros(K, np.int64)
    rng = np.random.default_rng(0)

    def sample(state, num, key=None, labels=None, z=None, truncation=None):
        out = []
        for c in labels:
            source = by_class[class_of(int(c), rng)]
            out.append(source[taken[c] % len(source)])
            taken[c] += 1
        return np.stack(out).astype(np.float32) / 127.5 - 1.0

    return sample


def frechet_distance_numpy(a: np.ndarray, b: np.ndarray) -> float:
    """FID in float64, Tr((S_a S_b)^1/2) from the eigenvalues of S_a S_b (real and >= 0 for PSD S_a, S_b)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_trace = np.sqrt(np.clip(np.linalg.eigvals(s_a @ s_b).real, 0, None)).sum()
    return float(np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(s_a) + np.trace(s_b) - 2 * root_trace)


def test_the_smoke_run_reports_both_evaluators(smoke_run):
    """(and trains as every smoke variant must: test_launch.check_trained; test_launch leaves this one to us)"""
    from test_launch import check_trained

    workdir, records = smoke_run
    check_trained(workdir)
    evaluation = [r for r in records if r.get("event") == "eval"][-1]
    assert evaluation["step"] == 4
    for key in ("accuracy", "accuracy_per_class", "intra_fid", "intra_fid_per_class", "classifier_sha256"):
        assert f"conditional/{key}" in evaluation
    assert evaluation["conditional/samples_per_class"] == [NUM_SAMPLES // K] * K
    assert 0 <= evaluation["conditional/accuracy"] <= 1 and evaluation["conditional/intra_fid"] > 0
    assert evaluation["cas/train_examples"] == NUM_SAMPLES and evaluation["cas/steps"] == CAS_STEPS
    assert evaluation["cas/batch_size"] == CAS_BATCH and evaluation["cas/test_images"] == NUM_EXAMPLES
    assert 0 <= evaluation["cas/accuracy"] <= 1 and len(evaluation["cas/accuracy_per_class"]) == K


@pytest.mark.parametrize("shift", [0, 1])
def test_conditional_metrics_of_real_digits(run, shift, monkeypatch):
    exp, step, state, fnet = run
    test, test_labels = data.load_arrays("mnist", "test", "files")
    test, test_labels = test[:NUM_EXAMPLES], test_labels[:NUM_EXAMPLES]
    monkeypatch.setattr(exp, "sample", digits_generator(test, test_labels, lambda c, rng: (c + shift) % K))
    result = evaluators.EVALUATORS["conditional"].fn(exp, state, step)

    # What the generator gave for class c: the first 130 test digits of class c + shift.
    features, probs = classify.embed(fnet, test)
    per_class = NUM_SAMPLES // K
    given = [np.flatnonzero(test_labels == (c + shift) % K)[:per_class] for c in range(K)]
    accuracy = [float(np.mean(probs[g].argmax(1) == c)) for c, g in enumerate(given)]
    fids = [frechet_distance_numpy(features[g], features[test_labels == c]) for c, g in enumerate(given)]
    print(f"shift {shift}: accuracy {result['accuracy']:.4f}, intra-FID {result['intra_fid']:.3f}")
    np.testing.assert_allclose(result["accuracy_per_class"], accuracy, atol=1.5 / per_class)
    np.testing.assert_allclose(result["worst_class_accuracy"], min(accuracy), atol=1.5 / per_class)
    np.testing.assert_allclose(result["accuracy"], np.mean(accuracy), atol=1.5 / NUM_SAMPLES)
    np.testing.assert_allclose(result["intra_fid_per_class"], fids, rtol=1e-3)
    np.testing.assert_allclose(result["intra_fid"], np.mean(fids), rtol=1e-3)
    assert result["samples_per_class"] == [per_class] * K
    assert result["reference_images_per_class"] == np.bincount(test_labels, minlength=K).tolist()
    assert result["samples"] == NUM_SAMPLES and result["reference_images"] == NUM_EXAMPLES
    assert result["classifier"] == "mnist" and result["classifier_sha256"] == classify.SHIPPED_SHA256["mnist"]
    if shift == 0:  # the classifier's own accuracy on real digits, and a floor far below the control's
        assert result["accuracy"] > 0.97 and result["intra_fid"] < 0.3 * np.mean(
            [frechet_distance_numpy(features[g], features[test_labels == (c + 1) % K]) for c, g in enumerate(given)])
    else:
        assert result["accuracy"] < 0.03


def _experiment(exp, **fields) -> Experiment:
    cfg = exp.cfg.copy_and_resolve_references()
    for field, value in fields.items():
        cfg.eval[field] = value
    return Experiment(cfg, load_train_data=False)


def test_counts_too_small_for_a_class_covariance_are_refused_in_one_line(run):
    exp = run[0]
    with pytest.raises(ConfigError, match=r"^eval.num_samples=1000 is not accepted by the 'conditional' evaluator: "
                                          r"it gives 100 samples of a class to fit a 128-dimensional covariance; "
                                          r"accepted: >= 1290$"):
        evaluators.selected(_experiment(exp, metrics="conditional", num_samples=1000))
    with pytest.raises(ConfigError, match=r"^eval.num_examples=1000 is not accepted by the 'conditional' evaluator: "
                                          r".*; accepted: >= 1527, or None \(all\)$"):
        evaluators.selected(_experiment(exp, metrics="conditional", num_examples=1000))
    # Unnamed, it runs where the counts suffice (the full run's) and not in the smoke variant's.
    assert "conditional" in evaluators.selected(_experiment(exp, metrics=""))
    small = evaluators.selected(_experiment(exp, metrics="", num_samples=500, num_examples=500))
    assert "classifier_space" in small and "conditional" not in small and "cas" not in small


def test_class_counts_of_a_split_without_enough_images_name_the_split():
    labels = np.repeat(np.arange(3), [200, 200, 50])
    with pytest.raises(ConfigError, match=r"^data.eval_split='test' is not accepted by the 'conditional' evaluator: "
                                          r"it holds 50 images of class 2 .*more than 128 images of each class$"):
        conditional.check_class_counts(128, 3, 600, labels, None, "test")
    conditional.check_class_counts(128, 3, 600, np.repeat(np.arange(3), 129), None, "test")  # the control


def test_held_arrays_do_not_replace_a_data_set():
    with pytest.raises(ConfigError, match=r"^data.name='mnist' is already a data set; accepted: a name not among "):
        with data.held("mnist", {}):
            pass
    assert data.DATASETS["mnist"].sources == ("files", "tfds")


def _cas_record(exp, step, state, monkeypatch, class_of) -> dict:
    train_images, train_labels = data.load_arrays("mnist", "train", "files")
    sample = digits_generator(train_images[:20_000], train_labels[:20_000], class_of)
    monkeypatch.setattr(exp, "sample", sample)
    return evaluators.EVALUATORS["cas"].fn(exp, state, step)


def test_cas_of_real_digits_is_the_classifier_objectives_accuracy_trained_on_them(run, monkeypatch, tmp_path):
    exp, step, state, fnet = run
    result = _cas_record(exp, step, state, monkeypatch, lambda c, rng: c)
    assert conditional.CAS_DATA_NAME not in data.DATASETS  # held only while it trained

    # The reference: the same digits, in the same order, in a .npz trained on by launch's training loop.
    train_images, train_labels = data.load_arrays("mnist", "train", "files")
    labels = conditional.sample_labels(K, NUM_SAMPLES)
    order = [np.flatnonzero(train_labels[:20_000] == c) for c in range(K)]
    rows = np.array([order[c][j // K] for j, c in enumerate(labels)])
    np.savez(tmp_path / "digits.npz", x=train_images[rows], y=labels)
    cfg = conditional.cas_config(fnet.model, exp.seed, CAS_STEPS, CAS_BATCH, exp.cfg.eval.cas_learning_rate)
    cfg.data.name, cfg.data.source = str(tmp_path / "digits.npz"), "files"
    train(cfg, str(tmp_path / "classifier"))
    trained, _, trained_state = restore(str(tmp_path / "classifier"), None)
    variables = {"params": trained_state.params["classifier"], "batch_stats": trained_state.batch_stats["classifier"]}
    net = classify.classifier_net("reference", trained.nets["classifier"], variables, (28, 28, 1))
    test, test_labels = data.load_arrays("mnist", "test", "files")
    predicted = classify.embed(net, test[:NUM_EXAMPLES])[1].argmax(1)
    reference = float(np.mean(predicted == test_labels[:NUM_EXAMPLES]))
    print(f"CAS of real digits {result['accuracy']:.4f}, the classifier objective on them {reference:.4f}")
    assert abs(result["accuracy"] - reference) <= 2 / NUM_EXAMPLES
    assert result["accuracy"] > 0.7  # it learned, in 60 updates
    per_class = [float(np.mean(predicted[test_labels[:NUM_EXAMPLES] == c] == c)) for c in range(K)]
    np.testing.assert_allclose(result["accuracy_per_class"], per_class, atol=0.02)
    assert result["train_examples"] == NUM_SAMPLES and result["test_images"] == NUM_EXAMPLES
    assert (result["steps"], result["batch_size"], result["architecture_of"]) == (CAS_STEPS, CAS_BATCH, "mnist")


def test_cas_of_digits_of_random_classes_is_chance(run, monkeypatch):
    exp, step, state, _ = run
    result = _cas_record(exp, step, state, monkeypatch, lambda c, rng: int(rng.integers(K)))
    print(f"CAS of digits of random classes {result['accuracy']:.4f}")
    assert result["accuracy"] < 0.25
