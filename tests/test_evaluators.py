"""The evaluator registry: a new evaluator is one registered function; eval.metrics selects by name,
refusing unknown names and evaluators that do not fit the run."""

import types

import pytest

from gan_jax.errors import ConfigError
from gan_jax.evaluate import evaluators


def run(objective="gan", mixture=None, metrics="", data="faces", shape=(28, 28, 1)):
    cfg = types.SimpleNamespace(objective=objective, eval=types.SimpleNamespace(metrics=metrics, classifier="",
                                                                                inception_weights=""),
                                data=types.SimpleNamespace(name=mixture or data))
    nets = {"vae": ["vae"], "classifier": ["classifier"]}.get(objective, ["generator", "discriminator"])
    return types.SimpleNamespace(cfg=cfg, dataset=types.SimpleNamespace(mixture=mixture), nets=nets,
                                 objective=types.SimpleNamespace(generates=objective != "classifier"),
                                 example_shape=(2,) if mixture else shape)


def test_default_is_every_evaluator_that_fits():
    assert evaluators.selected(run(mixture="ring8")) == ["modes"]
    assert evaluators.selected(run(objective="vae")) == ["vae_likelihood"]
    assert evaluators.selected(run()) == []  # no classifier of these images ships


def test_classifier_space_fits_generated_images_of_its_classifiers_shape():
    fits = evaluators.EVALUATORS["classifier_space"].fits
    assert fits(run(data="mnist")) and fits(run(objective="vae", data="binarized_mnist"))
    assert not fits(run(data="mnist", shape=(32, 32, 3)))  # the mnist classifier takes 28x28x1
    assert not fits(run(objective="classifier", data="mnist"))  # generates nothing
    assert not fits(run(mixture="ring8"))
    assert evaluators.EVALUATORS["classifier_accuracy"].fits(run(objective="classifier"))


def test_a_new_evaluator_is_one_registered_function(monkeypatch):
    monkeypatch.setattr(evaluators, "EVALUATORS", dict(evaluators.EVALUATORS))

    @evaluators.register("twice_step", fits=lambda exp: exp.cfg.objective == "gan", needs="a GAN")
    def twice_step(exp, state, step):
        return {"value": 2 * step}

    exp = run(metrics="twice_step")
    assert evaluators.selected(exp) == ["twice_step"]
    assert evaluators.flat(evaluators.run_all(exp, None, 21, ["twice_step"])) == {"twice_step/value": 42}
    with pytest.raises(ConfigError, match=r"^eval.metrics='twice_step': 'twice_step' needs a GAN; this run has "):
        evaluators.selected(run(objective="vae", metrics="twice_step"))


def test_unknown_name_lists_the_accepted_ones():
    accepted = ("cas, classifier_accuracy, classifier_space, conditional, inception, memorization, modes, parzen, "
                "stacked_modes, vae_likelihood")
    with pytest.raises(ConfigError, match=rf"'nope' is unknown; accepted: {accepted}$"):
        evaluators.selected(run(mixture="ring8", metrics="modes, nope"))


@pytest.mark.parametrize("objective,model", [("vae", "vae"), ("classifier", "classifier_cnn")])
def test_image_objectives_refuse_the_2d_mixtures(objective, model):
    from conftest import load_experiment

    from gan_jax.experiment import Experiment

    cfg = load_experiment("gan_mixture:ring,smoke")
    cfg.objective, cfg.model.name = objective, model
    if objective == "vae":
        cfg.loss.name = "elbo"
    with pytest.raises(ConfigError, match=rf"objective='{objective}' needs image data, got data.name='ring8'"):
        Experiment(cfg)
