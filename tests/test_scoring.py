"""`python -m gan_jax.evaluate A B` and gan_jax.evaluate.score (gan_jax/evaluate/scoring.py): its numbers are
the classifier_space evaluator's on a run's own samples and classify.score's on the same arrays; a folder of
PNGs written from a samples .npz scores as the .npz; FID against a stats file equals FID against the images
it was written from; every bad input is one line. Offline (the quickstart's embedded digits) and with the
tiny classifier of tests/test_classifier.py, calibrated on 28x28 digits."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from conftest import load_experiment, once_per_process
from PIL import Image
from test_classifier import calibrated, tiny_classifier

import gan_jax.evaluate
from gan_jax import data
from gan_jax.errors import UserError
from gan_jax.evaluate import classify, evaluators
from gan_jax.npz_stream import NpzStreamWriter

REPO = pathlib.Path(__file__).resolve().parents[1]
N = 150  # images a side: more than the tiny classifier's 16 features; KID's cost grows as N^2
REFERENCE = "quickstart_digits:test"  # 500 digits embedded in the install
SCORE_KEYS = ("fid", "kid", "kid_std", "precision", "recall", "density", "coverage", "is", "is_std",
              "confident_fraction", "class_histogram")


@pytest.fixture(scope="module")
@once_per_process
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("scoring")


@pytest.fixture(scope="module")
@once_per_process
def tiny(folder):
    """Two tiny 28x28x1 classifier files (16 features), calibrated on the embedded test digits."""
    reference, _ = data.load_arrays("quickstart_digits", "test", "embedded")
    paths = []
    for seed in (3, 4):
        config, net, variables = tiny_classifier((28, 28, 1), num_classes=10, feature_dim=16, seed=seed)
        paths.append(folder / f"tiny{seed}.npz")
        classify.save_classifier(paths[-1], config, (28, 28, 1), calibrated(net, variables, reference[:300]))
    return [str(p) for p in paths]


@pytest.fixture(scope="module")
@once_per_process
def samples(folder):
    """N digits written as launch.py --mode=sample writes samples.npz, and the same as PNG files."""
    images, _ = data.load_arrays("quickstart_digits", "train", "embedded")
    images = np.ascontiguousarray(images[:N])
    npz = folder / "samples.npz"
    with NpzStreamWriter(str(npz), "images", images.shape, np.uint8) as writer:
        writer.write(images)
    pngs = folder / "pngs"
    pngs.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image[..., 0]).save(pngs / f"{i:05d}.png")
    return images, str(npz), str(pngs)


def scores_of(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "provenance"}


def test_a_run_folder_scores_as_its_classifier_space_evaluation(folder, tiny):
    """A run's checkpoint (gan_mnist:smoke's networks at initialization, on the embedded digits), evaluated
    by classifier_space with N samples against N test digits, and `score(RUN, quickstart_digits:test,
    num=N)`: the same numbers."""
    from gan_jax.experiment import Experiment, write_workdir_config
    from gan_jax.grids import to_uint8
    from gan_jax.sampling import restore, sample_chunks, samples_key

    cfg = load_experiment("gan_mnist:smoke")  # an MLP: the quickest to compile
    cfg.data.name, cfg.data.source = "quickstart_digits", "embedded"
    cfg.eval.classifier, cfg.eval.num_samples, cfg.eval.num_examples, cfg.seed = tiny[0], N, N, 3
    workdir = str(folder / "run")
    os.makedirs(workdir)
    exp = Experiment(cfg, load_train_data=False)
    write_workdir_config(workdir, cfg)
    checkpointer = exp.checkpointer(workdir, asynchronous=False)
    checkpointer.save(7, exp.init_state(), config=json.loads(cfg.to_json()))
    checkpointer.wait()

    exp, step, state = restore(workdir, None)
    evaluated = evaluators.run_all(exp, state, step, ["classifier_space"])["classifier_space"]
    scored = gan_jax.evaluate.score(workdir, REFERENCE, features=tiny[0], num=N, seed=cfg.seed)
    assert {k: scored[k] for k in SCORE_KEYS} == {k: evaluated[k] for k in SCORE_KEYS}
    assert scored["fid"] > 1 and evaluated["samples"] == evaluated["reference_images"] == N  # an untrained G
    run = scored["provenance"]["SOURCE_A"]
    assert (run["kind"], run["step"], run["seed"], run["n"]) == ("run", 7, 3, N)
    assert scored["provenance"]["features"]["sha256"] == evaluated["classifier_sha256"]
    assert scored["provenance"]["kid_seed"] == 3
    # The samples are those of the evaluation's key, drawn a second way; those of --mode=sample's key differ.
    for key, same in ((evaluators.eval_samples_key(3, 7), True), (samples_key(3, 7), False)):
        drawn = np.concatenate([to_uint8(c, exp.unit_range) for c in sample_chunks(exp, state, key, N)])
        fid = gan_jax.evaluate.score(drawn, REFERENCE, features=tiny[0], num=N, metrics="fid")["fid"]
        assert (fid == scored["fid"]) == same, (fid, scored["fid"])


def test_a_png_folder_scores_as_the_npz_it_was_written_from_and_as_classify_score(tiny, samples):
    images, npz, pngs = samples
    reference, _ = data.load_arrays("quickstart_digits", "test", "embedded")
    from_npz = gan_jax.evaluate.score(npz, REFERENCE, features=tiny[0])
    want = classify.score(classify.load_classifier(tiny[0]), [images], reference)
    assert scores_of(from_npz) == {k: want[k] for k in SCORE_KEYS}
    assert from_npz["provenance"]["SOURCE_B"]["n"] == want["reference_images"] == 500
    without_kid = [name for name in classify.SCORES if name != "kid"]
    from_pngs = gan_jax.evaluate.score(pngs, REFERENCE, features=tiny[0], metrics=without_kid)
    assert scores_of(from_pngs) == {k: v for k, v in scores_of(from_npz).items() if not k.startswith("kid")}
    folder_source = from_pngs["provenance"]["SOURCE_A"]
    assert (folder_source["kind"], folder_source["n"]) == ("image folder", N)
    # The folder against the npz: the same images, FID ~0 (float32 statistics against float64), every
    # image in its own ball; against the reference, not.
    itself = gan_jax.evaluate.score(pngs, npz, features=tiny[0], metrics=["fid", "precision_recall"])
    assert abs(itself["fid"]) < 1e-4 * from_npz["fid"] and itself["precision"] == itself["recall"] == 1.0
    assert from_npz["precision"] < 1


def test_fid_against_a_stats_file_equals_fid_against_its_images(folder, tiny, samples):
    _, npz, pngs = samples
    stats = str(folder / "reference_stats.npz")
    full = gan_jax.evaluate.score(npz, REFERENCE, features=tiny[0], metrics="fid", save_stats=stats)
    assert full["provenance"]["saved_stats"] == stats
    from_stats = gan_jax.evaluate.score(npz, stats)  # the features: the stats file's
    assert from_stats["fid"] == full["fid"] and list(scores_of(from_stats)) == ["fid"]
    source = from_stats["provenance"]["SOURCE_B"]
    assert source["kind"] == "stats file" and source["n"] == 500 and source["statistics_of"]["source"] == REFERENCE
    assert from_stats["provenance"]["features"] == full["provenance"]["features"]
    # Beside a stats file its features are the default, not the classifier the other source's data calls for.
    itself = gan_jax.evaluate.score(REFERENCE, stats)
    assert itself["provenance"]["features"]["features"] == tiny[0] and abs(itself["fid"]) < 1e-4 * full["fid"]
    # One source alone writes its statistics; those of other images give another FID.
    other = str(folder / "sample_stats.npz")
    gan_jax.evaluate.score(pngs, features=tiny[0], save_stats=other)
    assert gan_jax.evaluate.score(npz, other)["fid"] != full["fid"]


def test_the_command_prints_json_and_a_line_per_score(tiny, samples, capsys):
    _, _, pngs = samples
    # Without the XLA flags the command sets for itself (cpu_runtime), as in this process: the same kernels.
    env = {**os.environ, "GAN_JAX_XLA_DEFAULTS": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    args = [pngs, REFERENCE, f"--features={tiny[0]}", "--metrics=fid,precision_recall,classes", "--num=100"]
    out = subprocess.run([sys.executable, "-m", "gan_jax.evaluate", *args], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result == json.loads(json.dumps(gan_jax.evaluate.score(pngs, REFERENCE, features=tiny[0],
                                                                  metrics="fid,precision_recall,classes", num=100)))
    lines = out.stderr.strip().splitlines()
    assert [line.split()[0] for line in lines[-6:]] == ["fid", "precision", "recall", "confident_fraction",
                                                        "class_histogram", "features"], lines
    assert float(lines[-6].split()[1]) == pytest.approx(result["fid"], rel=1e-5)

    from gan_jax.evaluate.__main__ import main

    assert main([*args[:-2], "--metrics=fid,fdi"]) == 2
    captured = capsys.readouterr()
    assert not captured.out and captured.err == ("error: --metrics='fid,fdi': 'fdi' is unknown; accepted: fid, kid, "
                                                 "precision_recall, density_coverage, is, classes\n")


def bad_folder(root: pathlib.Path, kind: str) -> str:
    path = root / kind
    path.mkdir(exist_ok=True)
    if kind == "unreadable":
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(path / "a.png")
        (path / "b.png").write_bytes(b"not a png")
    return str(path)


@pytest.mark.parametrize("case", ["shapes", "empty", "unreadable", "n<=d", "metric", "stats_network",
                                  "stats_metric", "source", "features_needed", "features", "resize", "npz"])
def test_bad_input_is_one_line(case, folder, tiny, samples):
    images, npz, pngs = samples
    stats = str(folder / "stats_for_errors.npz")
    if not os.path.exists(stats):
        gan_jax.evaluate.score(npz, features=tiny[0], save_stats=stats)
    (folder / "garbage.npz").write_bytes(b"not a zip")
    colour = np.zeros((N, 32, 32, 3), np.uint8)
    calls = {
        "shapes": ((npz, colour), {"features": tiny[0]}, ["SOURCE_A", "(28, 28, 1)", "SOURCE_B", "(32, 32, 3)"]),
        "empty": ((bad_folder(folder, "empty"), npz), {"features": tiny[0]}, ["empty", "no images found"]),
        "unreadable": ((bad_folder(folder, "unreadable"), npz), {"features": tiny[0]}, ["b.png", "not a decodable"]),
        "n<=d": ((npz, REFERENCE), {"features": tiny[0], "num": 16}, ["n=16", "d=16", "FID needs n > d"]),
        "metric": ((npz, REFERENCE), {"features": tiny[0], "metrics": "fid,recall"},
                   ["'recall' is unknown", "accepted: fid, kid, precision_recall, density_coverage, is, classes"]),
        "stats_network": ((npz, stats), {"features": tiny[1]}, ["statistics of tiny3", "--features='" + tiny[0]]),
        "stats_metric": ((npz, stats), {"metrics": "fid,kid"}, ["'kid' needs the features", "accepted with a stats"]),
        "source": (("no_such_data:test", npz), {}, ["'no_such_data:test' is no source", "a run folder", "mnist"]),
        "features_needed": ((npz, pngs), {}, ["--features is needed", "inception"]),
        "features": ((npz, REFERENCE), {"features": "imagenet"}, ["--features='imagenet'", "inception"]),
        "resize": ((npz, REFERENCE), {"features": tiny[0], "resize": "clean"}, ["--resize='clean' applies to"]),
        "npz": ((str(folder / "garbage.npz"), REFERENCE), {}, ["garbage.npz", "no readable arrays"]),
    }
    args, kwargs, wanted = calls[case]
    with pytest.raises(UserError) as raised:
        gan_jax.evaluate.score(*args, **kwargs)
    message = str(raised.value)
    assert "\n" not in message and all(w in message for w in wanted), message
