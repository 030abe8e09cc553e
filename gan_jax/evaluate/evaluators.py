"""Evaluators, registered by name: each computes metrics of a train state, for `launch.py --mode=eval`
and, every `eval.every` steps, inside training (metrics.jsonl and TensorBoard, with the step).

`eval.metrics` names them (empty: every registered evaluator that fits the run). A new one is one
function and its `fits` test:

    @register("my_metric", fits=lambda exp: exp.dataset.mixture is not None)
    def my_metric(exp, state, step: int) -> dict: ...

One that also draws pictures (`draws=True`) takes `folder=`: the run folder they go to (DIR/pictures/,
report.PICTURES), None where nothing is to be written (processes other than 0). `default` may be a test of
the experiment: the evaluator then runs unnamed only where it says so (`conditional`: where the counts
suffice), and is refused in one line where named and its `prepare` fails.
"""

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import jax
import numpy as np

from gan_jax import data, keys, parallel
from gan_jax.errors import ConfigError
from gan_jax.evaluate import classify, conditional, memorization, modes, parzen, vae_metrics
from gan_jax.grids import to_uint8
from gan_jax.sampling import sample_chunks


@dataclass(frozen=True)
class Evaluator:
    fn: Callable[..., dict]  # (experiment, state laid out as Experiment.init_state places it, step) -> metrics
    fits: Callable[..., bool]  # (experiment) -> whether the evaluator applies to the run
    needs: str  # said when it does not fit
    prepare: Callable[..., object] | None = None  # (experiment) -> loads what it needs, raising UserError
    default: bool | Callable[..., bool] = True  # run when eval.metrics is empty (False: only when named;
    # a function of the experiment: where it returns True)
    draws: bool = False  # fn takes folder= (the run folder; None: draw nothing) and writes pictures there


EVALUATORS: dict[str, Evaluator] = {}


def register(name: str, fits: Callable[..., bool], needs: str, prepare: Callable[..., object] | None = None,
             default: bool | Callable[..., bool] = True, draws: bool = False):
    def wrap(fn):
        EVALUATORS[name] = Evaluator(fn, fits, needs, prepare, default, draws)
        return fn

    return wrap


def selected(exp) -> list[str]:
    """The evaluators of a run: eval.metrics, or every default one that fits, with what they need loaded (weights,
    classifiers), so that a missing file is refused before training starts. Raises ConfigError, naming
    the field, for an unknown name or one that does not fit the run's data or objective."""
    names = [n.strip() for n in exp.cfg.eval.metrics.split(",") if n.strip()]
    if not names:
        names = [n for n, e in EVALUATORS.items()
                 if e.default and e.fits(exp) and (not callable(e.default) or e.default(exp))]
    else:
        _check_names(exp, names)
    for n in names:
        if EVALUATORS[n].prepare is not None:
            EVALUATORS[n].prepare(exp)
    return names


def _check_names(exp, names: list[str]) -> None:
    for n in names:
        if n not in EVALUATORS:
            raise ConfigError(f"eval.metrics={exp.cfg.eval.metrics!r}: {n!r} is unknown; accepted: "
                              f"{', '.join(sorted(EVALUATORS))}")
        if not EVALUATORS[n].fits(exp):
            raise ConfigError(f"eval.metrics={exp.cfg.eval.metrics!r}: {n!r} needs {EVALUATORS[n].needs}; "
                              f"this run has objective={exp.cfg.objective!r}, data.name={exp.cfg.data.name!r}")


def run_all(exp, state, step: int, names: list[str], folder: str | None = None) -> dict:
    """{evaluator name: its metrics} for `names`; those that draw write their pictures in the run folder
    `folder` (None: nowhere)."""
    return {n: EVALUATORS[n].fn(exp, state, step, **({"folder": folder} if EVALUATORS[n].draws else {}))
            for n in names}


def flat(results: dict) -> dict:
    """{'modes': {'modes_captured': 6}} -> {'modes/modes_captured': 6}: metrics.jsonl and TensorBoard names."""
    return {f"{name}/{k}": v for name, metrics in results.items() for k, v in metrics.items()}


def eval_samples_key(seed: int, step: int) -> jax.Array:
    """The key of the evaluation samples of a run's checkpoint `step`: the same for every evaluation of
    that step (and for `python -m gan_jax.evaluate RUN ...`)."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), keys.EVAL_SAMPLES), step)


def _test_images(exp) -> tuple[np.ndarray, np.ndarray | None]:
    """The eval split (eval.num_examples of it): images uint8, labels or None."""
    images, labels = _eval_split(exp)
    n = exp.cfg.eval.num_examples
    return (images, labels) if n is None else (images[:n], None if labels is None else labels[:n])


def _eval_split(exp) -> tuple[np.ndarray, np.ndarray | None]:
    """The whole eval split: images uint8, labels or None."""
    cfg = exp.cfg
    return data.load_arrays(cfg.data.name, cfg.data.eval_split, cfg.data.source, cfg.data.dir,
                            tfds_dir=cfg.data.get("tfds_dir"))


@register("modes", fits=lambda exp: exp.dataset.mixture is not None, needs="a 2D mixture (ring8, grid25)")
def mixture_modes(exp, state, step: int) -> dict:
    """The PacGAN protocol on eval.num_samples samples from a key of (seed, step): modes captured, the
    high-quality fraction (within 3 std of the nearest mode) and the KL of their mode histogram to uniform."""
    points = exp.sample(state, exp.cfg.eval.num_samples, key=eval_samples_key(exp.seed, step))
    metrics = modes.mixture_mode_metrics(points, exp.cfg.data.name)
    if not math.isfinite(metrics["reverse_kl"]):  # no high-quality sample: undefined, and JSON has no inf
        metrics["reverse_kl"] = None
    return {"samples": exp.cfg.eval.num_samples, **metrics}


@register("vae_likelihood", fits=lambda exp: exp.cfg.objective == "vae", needs="objective='vae'")
def vae_likelihood(exp, state, step: int) -> dict:
    """On the test split (eval.num_examples of it), binarized once with a key of (seed, example): the
    one-sample negative ELBO, the IWAE estimate of -log p(x) with eval.iwae_k samples, and the active
    units; nats per example."""
    cfg = exp.cfg
    images, _ = _test_images(exp)
    x = vae_metrics.binarize_once(images, cfg.seed) if exp.dataset.binarize else images.astype(np.float32) / 255.0
    V, params = exp.nets["vae"], state.params["vae"]
    options = dict(seed=cfg.seed, batch_size=cfg.eval.batch_size, likelihood=cfg.loss.likelihood,
                   gaussian_std=cfg.loss.gaussian_std)
    log_px = vae_metrics.dataset_iwae(V, params, x, cfg.eval.iwae_k, **options)
    one = vae_metrics.dataset_iwae(V, params, x, 1, **options)  # k = 1: the one-sample ELBO
    return {"split": cfg.data.eval_split, "examples": len(x), "test_neg_elbo_nats": float(-one.mean()),
            "test_nll_iwae_nats": float(-log_px.mean()), "iwae_k": cfg.eval.iwae_k,
            "active_units": vae_metrics.active_units(vae_metrics.posterior_means(V, params, x)),
            "latent_dim": cfg.model.latent_dim}


@register("classifier_space", fits=classify.fits,
          needs="a generating run on data with a classifier of its image shape (eval.classifier)",
          prepare=lambda exp: _check_counts(exp, classify.load_classifier(classify.classifier_for(exp.cfg))))
def classifier_space(exp, state, step: int) -> dict:
    """eval.num_samples samples (a key of (seed, step)) scored by the data's classifier against the eval
    split: FID, KID, precision/recall, the Inception-Score analogue, the confident fraction, the class
    histogram (gan_jax/evaluate/classify.py)."""
    return _score_samples(exp, state, step, classify.load_classifier(classify.classifier_for(exp.cfg)))


def _check_counts(exp, fnet) -> None:
    classify.check_counts(fnet, exp.cfg.eval.num_samples, len(_test_images(exp)[0]))


def eval_images(exp, state, step: int, num_samples: int) -> Iterator[np.ndarray]:
    """The evaluation samples of checkpoint `step` (the key of (seed, step)), uint8 as the saved PNGs,
    in chunks of at most sampling.CHUNK."""
    for chunk in sample_chunks(exp, state, eval_samples_key(exp.seed, step), num_samples):
        yield to_uint8(chunk, exp.unit_range)


def _score_samples(exp, state, step: int, fnet) -> dict:
    """eval.num_samples samples of the step's key, as uint8, scored by `fnet` against the eval split."""
    chunks = eval_images(exp, state, step, exp.cfg.eval.num_samples)
    reference, _ = _test_images(exp)
    return {"split": exp.cfg.data.eval_split,
            **classify.score(fnet, chunks, reference, exp.mesh, exp.cfg.eval.batch_size, exp.seed)}


def _parzen_validation(exp) -> np.ndarray:
    """parzen.VALIDATION_EXAMPLES examples, uint8 (V, H, W, C), of the whole split that data.split names or
    slices: held out from training where data.split leaves them out (MNIST 'train[:50000]', the paper's)."""
    cfg = exp.cfg
    whole_split, _ = data.parse_split(cfg.data.split)
    images, _ = data.load_arrays(cfg.data.name, whole_split, cfg.data.source, cfg.data.dir,
                                 tfds_dir=cfg.data.get("tfds_dir"))
    start = len(images) - parzen.VALIDATION_FROM_END
    if start < parzen.VALIDATION_FROM_END:
        raise ConfigError(f"eval.metrics={cfg.eval.metrics!r}: 'parzen' needs a training split of at least "
                          f"{2 * parzen.VALIDATION_FROM_END} examples for its validation digits; data.name="
                          f"{cfg.data.name!r} split {cfg.data.split!r} has {len(images)}")
    return images[start:start + parzen.VALIDATION_EXAMPLES]


@register("parzen", fits=lambda exp: exp.objective.generates and exp.dataset.mixture is None,
          needs="image samples", prepare=_parzen_validation, default=False)
def parzen_window(exp, state, step: int) -> dict:
    """Goodfellow et al. 2014's Table 1 estimate (gan_jax/evaluate/parzen.py): eval.num_samples samples
    (a key of (seed, step)) as Parzen-window centres, sigma chosen on the training split's held-out
    examples, the mean log-likelihood of the eval split (eval.num_examples of it); pixels in [0, 1]."""
    def flat_unit(images: np.ndarray, unit_range: bool) -> np.ndarray:
        x = np.asarray(images, np.float64)
        return (x if unit_range else (x + 1.0) / 2.0).reshape(len(x), -1)

    samples = np.concatenate([flat_unit(c, exp.unit_range) for c in
                              sample_chunks(exp, state, eval_samples_key(exp.seed, step), exp.cfg.eval.num_samples)])
    validation = _parzen_validation(exp).reshape(parzen.VALIDATION_EXAMPLES, -1) / 255.0
    test = _test_images(exp)[0]
    result = parzen.parzen_window(samples, validation, test.reshape(len(test), -1) / 255.0,
                                  batch_size=exp.cfg.eval.batch_size)
    return {"split": exp.cfg.data.eval_split, "samples": len(samples), "examples": len(test), **result}


@register("stacked_modes", fits=lambda exp: exp.cfg.data.name == "stacked_mnist" and exp.objective.generates,
          needs="data.name='stacked_mnist'", prepare=lambda exp: classify.load_classifier("mnist"))
def stacked_mnist_modes(exp, state, step: int) -> dict:
    """Stacked MNIST (Metz et al. 2017; PacGAN's protocol with 26,000 samples = eval.num_samples): each
    channel classified by the shipped mnist classifier; modes captured out of 1,000 and the KL of the
    mode histogram to uniform."""
    fnet = classify.load_classifier("mnist")
    digits = []
    for chunk in sample_chunks(exp, state, eval_samples_key(exp.seed, step), exp.cfg.eval.num_samples):
        u8 = to_uint8(chunk, exp.unit_range)
        per_channel = [classify.embed(fnet, u8[..., c:c + 1], exp.mesh, exp.cfg.eval.batch_size)[1].argmax(1)
                       for c in range(3)]
        digits.append(np.stack(per_channel, axis=1))
    captured, kl = modes.stacked_modes(np.concatenate(digits))
    return {"samples": exp.cfg.eval.num_samples, "classifier": fnet.name, "classifier_sha256": fnet.sha256,
            "modes_captured": captured, "modes": 1000, "reverse_kl": kl}


@register("classifier_accuracy", fits=lambda exp: "classifier" in exp.nets, needs="objective='classifier'")
def classifier_accuracy(exp, state, step: int) -> dict:
    """The run's own classifier on the eval split: accuracy and mean cross-entropy (nats)."""
    images, labels = _test_images(exp)
    variables = {"params": state.params["classifier"], "batch_stats": state.batch_stats["classifier"]}
    fnet = classify.classifier_net(exp.cfg.model.name, exp.nets["classifier"], jax.device_get(variables),
                                   tuple(exp.example_shape))
    _, probs = classify.embed(fnet, images, exp.mesh, exp.cfg.eval.batch_size)
    nll = -np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-30))
    return {"split": exp.cfg.data.eval_split, "examples": len(labels),
            "accuracy": float(np.mean(probs.argmax(1) == labels)), "cross_entropy_nats": float(nll.mean()),
            "params_sha256": fnet.sha256}


@register("inception", fits=lambda exp: bool(exp.cfg.eval.inception_weights) and exp.objective.generates
          and exp.dataset.mixture is None, needs="image samples and eval.inception_weights (a file or 'download')",
          prepare=lambda exp: _check_counts(exp, _inception(exp)))
def inception_space(exp, state, step: int) -> dict:
    """Like classifier_space, with the FID InceptionV3 (pytorch-fid's weights, resized to 299x299 as
    eval.inception_resize names): FID, KID, precision/recall and the Inception Score on 2048-d pool3
    features and the 1008-way softmax; the record names the resize."""
    return _score_samples(exp, state, step, _inception(exp))


def _class_classifier(exp) -> classify.FeatureNet:
    return classify.load_classifier(classify.classifier_for(exp.cfg))


def _conditional_fits(exp) -> bool:
    """A class-conditional generator whose data have a classifier of their shape and of its classes."""
    return (classify.fits(exp) and exp.cfg.model.num_classes > 0
            and classify.num_classes(_class_classifier(exp)) == exp.cfg.model.num_classes
            and _eval_split(exp)[1] is not None)


def _check_class_counts(exp) -> None:
    cfg = exp.cfg
    conditional.check_class_counts(classify.feature_dim(_class_classifier(exp)), cfg.model.num_classes,
                                   cfg.eval.num_samples, _eval_split(exp)[1], cfg.eval.num_examples,
                                   cfg.data.eval_split)


def _class_counts_suffice(exp) -> bool:
    try:
        _check_class_counts(exp)
    except ConfigError:
        return False
    return True


CONDITIONAL_NEEDS = ("a class-conditional generator (model.num_classes > 0) on labelled data with a classifier of "
                     "its image shape and classes (eval.classifier)")


@register("conditional", fits=_conditional_fits, needs=CONDITIONAL_NEEDS, prepare=_check_class_counts,
          default=_class_counts_suffice)
def conditional_metrics(exp, state, step: int) -> dict:
    """eval.num_samples samples (a key of (seed, step)), cycled over the classes, classified by the data's
    classifier: conditional accuracy (over all and per class) and intra-class FID against each class's
    images of the eval split (gan_jax/evaluate/conditional.py). Runs unnamed where every class has more
    samples and test images than the classifier has feature dimensions."""
    cfg, fnet = exp.cfg, _class_classifier(exp)
    samples = classify.embed_samples(fnet, eval_images(exp, state, step, cfg.eval.num_samples), exp.mesh,
                                     cfg.eval.batch_size)
    test, test_labels = _test_images(exp)
    reference = classify.reference_features(fnet, test, exp.mesh, cfg.eval.batch_size)
    labels = conditional.sample_labels(cfg.model.num_classes, samples.n)
    return {"split": cfg.data.eval_split, **fnet.identity, "samples": samples.n, "reference_images": len(test),
            **conditional.class_scores(samples.features, samples.probs, labels, reference, test_labels)}


def _cas_prepare(exp) -> None:
    _class_classifier(exp)
    parallel.check_batch(exp.cfg.eval.cas_batch_size, "eval.cas_batch_size")


@register("cas", fits=_conditional_fits, needs=CONDITIONAL_NEEDS, prepare=_cas_prepare, default=False)
def classification_accuracy_score(exp, state, step: int) -> dict:
    """The Classification Accuracy Score (Ravuri & Vinyals 2019; gan_jax/evaluate/conditional.py): a
    classifier of the data classifier's architecture trained through the classifier objective on
    eval.num_samples samples (a key of (seed, step)), labelled with the classes they were drawn for, for
    eval.cas_steps updates of eval.cas_batch_size at eval.cas_learning_rate; its accuracy on the eval split."""
    cfg, fnet = exp.cfg, _class_classifier(exp)
    images = np.concatenate(list(eval_images(exp, state, step, cfg.eval.num_samples)))
    test, test_labels = _test_images(exp)
    run = conditional.cas_config(fnet.model, exp.seed, cfg.eval.cas_steps, cfg.eval.cas_batch_size,
                                 cfg.eval.cas_learning_rate)
    return {"split": cfg.data.eval_split, "architecture_of": fnet.name,
            **conditional.classification_accuracy_score(
                images, conditional.sample_labels(cfg.model.num_classes, len(images)), test, test_labels, run,
                cfg.eval.batch_size)}


def _inception(exp) -> classify.FeatureNet:
    return classify.inception_net(exp.cfg.eval.inception_weights, exp.cfg.eval.inception_resize)


def _memorization_fits(exp) -> bool:
    return exp.objective.generates and exp.dataset.mixture is None and (
        classify.fits(exp) or memorization.uses_pixel_space(tuple(exp.example_shape)))


def _memorization_prepare(exp) -> None:
    if classify.fits(exp):
        classify.load_classifier(classify.classifier_for(exp.cfg))


@register("memorization", fits=_memorization_fits, prepare=_memorization_prepare, default=False, draws=True,
          needs=f"image samples, with a classifier of their shape (eval.classifier) or of at most "
                f"{memorization.PIXEL_SPACE_MAX_SIDE}x{memorization.PIXEL_SPACE_MAX_SIDE} pixels")
def memorization_check(exp, state, step: int, folder: str | None = None) -> dict:
    """Whether the generator copies its training split (gan_jax/evaluate/memorization.py): eval.num_samples
    samples (a key of (seed, step)) and the eval split (eval.num_examples of it), each image's distance to
    its nearest training image in the classifier's feature space and, for small images, in pixel space; per
    space the fraction of samples closer than the 1st percentile of the test-to-train distances and the
    median distance ratio. Draws the nearest-neighbour grids and the histograms into `folder`."""
    cfg = exp.cfg
    samples = np.concatenate(list(eval_images(exp, state, step, cfg.eval.num_samples)))
    train, _ = data.load_arrays(cfg.data.name, cfg.data.split, cfg.data.source, cfg.data.dir,
                                tfds_dir=cfg.data.get("tfds_dir"))
    test, _ = _test_images(exp)
    spaces, identity = {}, {}
    if classify.fits(exp):
        fnet = classify.load_classifier(classify.classifier_for(cfg))
        reference = lambda images: classify.reference_features(fnet, images, exp.mesh, cfg.eval.batch_size)
        spaces["features"] = memorization.distances(classify.embed(fnet, samples, exp.mesh, cfg.eval.batch_size)[0],
                                                    reference(train), reference(test))
        identity = fnet.identity
    if memorization.uses_pixel_space(tuple(exp.example_shape)):
        spaces["pixels"] = memorization.distances(memorization.pixels(samples), memorization.pixels(train),
                                                  memorization.pixels(test))
    if folder is not None:
        memorization.write_pictures(folder, step, spaces, samples, train)
    return {"split": cfg.data.eval_split, "train_split": cfg.data.split, "samples": len(samples),
            "train_images": len(train), "test_images": len(test), **identity, **memorization.summary(spaces)}
