"""The evaluator registry: a new evaluator is one registered function; eval.metrics selects by name,
refusing unknown names and evaluators that do not fit the run."""

import types

import pytest

from gan_jax.errors import ConfigError
from gan_jax.evaluate import evaluators


def run(objective="gan", mixture=None, metrics=""):
    cfg = types.SimpleNamespace(objective=objective, eval=types.SimpleNamespace(metrics=metrics),
                                data=types.SimpleNamespace(name=mixture or "mnist"))
    return types.SimpleNamespace(cfg=cfg, dataset=types.SimpleNamespace(mixture=mixture))


def test_default_is_every_evaluator_that_fits():
    assert evaluators.selected(run(mixture="ring8")) == ["modes"]
    assert evaluators.selected(run(objective="vae")) == ["vae_likelihood"]
    assert evaluators.selected(run()) == []


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
    with pytest.raises(ConfigError, match=r"'nope' is unknown; accepted: modes, vae_likelihood$"):
        evaluators.selected(run(mixture="ring8", metrics="modes, nope"))
