"""Sweeps (gan_jax/sweep.py, gan_jax/sweep_runner.py) and vectorized runs (gan_jax/vectorized.py): the
declarations, and the runs of a vmapped program against the same variants trained alone (the reference:
the plain loop)."""

import json
import logging
import shutil
import textwrap

import jax
import numpy as np
import pytest
from conftest import once_per_process
from state_compare import bitwise_equal, state_tree, update_difference

from gan_jax import sweep, sweep_runner, training
from gan_jax.errors import UserError
from gan_jax.experiment_files import load_experiment_file

RING = '''
from gan_jax import sweep
from gan_jax.config import base_config

VARIANTS = ("smoke",)


def get_config(arg=None):
    c = base_config()
    c.objective = "gan"
    c.data.name = "ring8"
    c.data.source = "synthetic"
    c.data.batch_size = 32
    c.model.name = "mlp_gan"
    c.model.latent_dim = 2
    c.model.generator_width = 16
    c.model.generator_depth = 2
    c.model.generator_batch_norm = True
    c.model.discriminator_width = 8
    c.model.discriminator_depth = 2
    c.model.maxout_pieces = 3
    c.optimizer.learning_rate = 1e-3
    c.loss.penalties = "r1:1"
    c.train.steps = 8
    c.train.steps_per_call = 2
    c.train.log_every = 2
    c.train.sample_every = 8
    c.train.checkpoint_every = 4
    c.eval.every = 8
    c.eval.num_samples = 100
    c.train.on_nonfinite = "rollback"
    c.train.max_rollbacks = 2
    return c


def get_sweep(arg=None):
    return sweep.product(sweep.zip(sweep.axis("optimizer.learning_rate", LEARNING_RATES),
                                   sweep.axis("loss.penalties", ["r1:1", "r1:0.1", "r1:2"][:len(LEARNING_RATES)])),
                         sweep.seeds(2))
'''
# Vectorized against alone: vmapped matmuls, convolutions and reductions round differently. On the runs'
# changes from the initial state (tests/state_compare.py: parameters, BatchNorm statistics, Adam's
# moments, element by element) that measured <= 1.4e-5 (ring) and 6.4e-5 (images); the controls (the same
# seed at another learning rate; another data seed) 3.5 and 0.46.
RUN_TOLERANCE = 1e-3


def write_experiment(tmp_path, learning_rates=(1e-3, 3e-3), text=RING):
    path = tmp_path / "ring.py"
    path.write_text(text + f"\nLEARNING_RATES = {list(learning_rates)!r}\n")
    return str(path)


def final_params(workdir, step):
    from gan_jax.sampling import restore

    _, _, state = restore(str(workdir), step)
    return state_tree(state)


def initial_state(spec, base, name) -> dict:
    from gan_jax.experiment import Experiment

    return state_tree(Experiment(sweep.apply(base, variant(spec, name)), load_train_data=False).init_state())


def run_difference(a, b, initial, step=8) -> tuple[float, str]:
    """update_difference (tests/state_compare.py) of run folder `a` from `b` at `step`."""
    return update_difference(final_params(a, step), final_params(b, step), initial)


# --- declarations ------------------------------------------------------------------------------
def test_product_zip_and_names():
    packs = sweep.axis("model.pack", [1, 2], names=["GAN", "PacGAN2"])
    variants = sweep.product(packs, sweep.seeds(2))
    expected = [{"name": n, "model.pack": p, "seed": s} for n, p in (("GAN", 1), ("PacGAN2", 2)) for s in (0, 1)]
    assert variants == expected
    assert [sweep.run_name(v) for v in variants] == ["GAN,seed=0", "GAN,seed=1", "PacGAN2,seed=0", "PacGAN2,seed=1"]
    assert [sweep.setting_name(v) for v in variants] == ["GAN", "GAN", "PacGAN2", "PacGAN2"]
    zipped = sweep.zip(sweep.axis("optimizer.learning_rate", [1e-4, 3e-4]), sweep.axis("loss.penalties", ["r1:1", ""]))
    assert zipped == [{"optimizer.learning_rate": 1e-4, "loss.penalties": "r1:1"},
                      {"optimizer.learning_rate": 3e-4, "loss.penalties": ""}]
    assert sweep.run_name(zipped[0]) == "optimizer.learning_rate=0.0001,loss.penalties=r1:1"
    assert sweep.run_name({"seed": 3}) == "seed=3" and sweep.setting_name({"seed": 3}) == "default"
    assert sweep.setting_name(sweep.product(packs[1:], [{"name": "hinge", "loss.name": "hinge"}])[0]) == "PacGAN2-hinge"
    with pytest.raises(ValueError, match="different lengths"):
        sweep.zip(sweep.seeds(2), sweep.seeds(3))
    with pytest.raises(ValueError, match="'seed' set to both 0 and 1"):
        sweep.product(sweep.seeds(1), [{"seed": 1}])
    with pytest.raises(UserError, match="several variants named 'seed=0'"):
        sweep.check_unique(sweep.seeds(1) * 2)


def test_apply_refuses_a_field_the_config_lacks():
    from gan_jax.config import base_config

    cfg = sweep.apply(base_config(), {"optimizer.learning_rate": 0.5, "seed": 4, "name": "x"})
    assert cfg.optimizer.learning_rate == 0.5 and cfg.seed == 4
    with pytest.raises(UserError, match=r"^sweep variant 'x,seed=1': the config has no field 'optimizer.lr'$"):
        sweep.apply(base_config(), {"name": "x", "optimizer.lr": 1, "seed": 1})


def test_program_key_separates_what_changes_the_step():
    from gan_jax import vectorized
    from gan_jax.config import base_config

    a, b = base_config(), base_config()
    b.seed, b.optimizer.learning_rate, b.loss.penalties, b.train.steps = 3, 1e-3, "", 7
    assert vectorized.program_key(a) == vectorized.program_key(b)
    b.loss.penalties = "r1:5"
    a.loss.penalties = "r1:10"
    assert vectorized.program_key(a) == vectorized.program_key(b)  # weights are arrays, names are not
    b.loss.penalties = "r1:5:4"
    assert vectorized.program_key(a) != vectorized.program_key(b)
    assert "loss.penalties" in vectorized.why_not_vectorizable([a, b])


def test_program_key_holds_train_steps_where_the_schedule_decays_over_it():
    from gan_jax import vectorized
    from gan_jax.config import base_config

    a, b = base_config(), base_config()
    b.train.steps = 7
    assert vectorized.program_key(a) == vectorized.program_key(b)  # constant: steps are per run
    a.optimizer.schedule = b.optimizer.schedule = "linear"
    assert vectorized.program_key(a) != vectorized.program_key(b)  # linear decay to 0 at train.steps
    assert "train.steps" in vectorized.why_not_vectorizable([a, b])
    b.train.steps = a.train.steps
    assert vectorized.program_key(a) == vectorized.program_key(b)


# --- vectorized against alone -------------------------------------------------------------------
class _Log(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def run_sweep(spec, base, root, **kw):
    handler = _Log()
    logging.getLogger("jax").addHandler(handler)
    try:
        with jax.log_compiles(True):
            outcome = sweep_runner.run(spec, base, str(root), **kw)
    finally:
        logging.getLogger("jax").removeHandler(handler)
    return outcome, sum("Compiling jit(vectorized_multi_step)" in line for line in handler.lines)


@pytest.fixture(scope="module")
@once_per_process
def ring_runs(tmp_path_factory):
    """A 3 learning rates x 2 seeds ring sweep (r1 weights zipped with the rates; the third rate
    diverges at once, and rolls back before it stops), vectorized; the first four runs also alone."""
    root = tmp_path_factory.mktemp("sweep")
    spec = write_experiment(root, learning_rates=(1e-3, 3e-3, 1e30))
    base = load_experiment_file(spec)[0].get_config()
    base.sweep.vectorize = True
    outcome, compilations = run_sweep(spec, base, root / "vectorized")
    names = list(outcome)
    for n in names[:4]:
        training.train(sweep.apply(base, variant(spec, n)), str(root / "alone" / n))
    return root, spec, base, names, outcome, compilations


def variant(spec, name):
    module, arg = load_experiment_file(spec)
    return next(v for v in module.get_sweep(arg) if sweep.run_name(v) == name)


def test_vectorized_runs_equal_runs_alone(ring_runs):
    root, spec, base, names, outcome, compilations = ring_runs
    assert compilations == 1
    assert [outcome[n] for n in names] == ["finished"] * 4 + ["diverged"] * 2  # one run diverging stops alone
    for n in names[:4]:
        diff, where = run_difference(root / "vectorized" / n, root / "alone" / n, initial_state(spec, base, n))
        print(f"{n}: vectorized vs alone {diff:.2e} ({where})")
        assert diff < RUN_TOLERANCE
    # Control: the same seed at another learning rate (and r1 weight) is far.
    diff, where = run_difference(root / "vectorized" / names[2], root / "vectorized" / names[0],
                                 initial_state(spec, base, names[0]))
    print(f"control, {names[2]} vs {names[0]}: {diff:.2e} ({where})")
    assert diff > 10 * RUN_TOLERANCE
    # The diverging run rolled back alone (to step 0, with fresh keys) twice, then stopped.
    log = (root / "vectorized" / names[4] / "metrics.jsonl").read_text()
    events = [json.loads(line).get("event") for line in log.splitlines()]
    assert [e for e in events if e in ("rollback", "diverged")] == ["rollback", "rollback", "diverged"]


def test_each_vectorized_run_logs_samples_checkpoints_and_evaluates_alone(ring_runs):
    root, _, _, names, _, _ = ring_runs
    for n in names[:4]:
        run = root / "vectorized" / n
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in records if "d_loss" in r] == [2, 4, 6, 8]
        evals = [r for r in records if r.get("event") == "eval"]
        assert [e["step"] for e in evals] == [8] and evals[0]["modes/samples"] == 100
        assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.isdigit()) == ["4", "8"]
        assert (run / "samples" / "step_0000008.png").is_file()
        # The run's loss curve is its own, the same as alone (logged means of the same steps).
        alone = [json.loads(line) for line in (root / "alone" / n / "metrics.jsonl").read_text().splitlines()]
        np.testing.assert_allclose([r["d_loss"] for r in records if "d_loss" in r],
                                   [r["d_loss"] for r in alone if "d_loss" in r], rtol=1e-4)
    sweep_file = json.loads((root / "vectorized" / "sweep.json").read_text())
    assert [r["name"] for r in sweep_file["runs"]] == names


def test_a_rerun_skips_finished_and_diverged_runs_and_runs_at_different_steps_resume(ring_runs, tmp_path):
    root, spec, base, names, outcome, _ = ring_runs
    resumed = tmp_path / "resumed"
    shutil.copytree(root / "vectorized", resumed)
    # As if killed between two runs' saves: one run's newest checkpoint is gone (step 4 left), another's
    # too and its older one: the runs resume at different steps (4 and 0) in one program.
    shutil.rmtree(resumed / names[1] / "checkpoints" / "8")
    shutil.rmtree(resumed / names[2] / "checkpoints" / "8")
    shutil.rmtree(resumed / names[2] / "checkpoints" / "4")
    again, compilations = run_sweep(spec, base, resumed)
    assert again == outcome and compilations == 1
    # The same program as before (the ended runs stay in it, inactive): the same bits as uninterrupted.
    for n in names[1:3]:
        assert bitwise_equal(final_params(resumed / n, 8), final_params(root / "vectorized" / n, 8)), n
    again, compilations = run_sweep(spec, base, resumed)
    assert again == outcome and compilations == 0  # finished and diverged runs are left alone


def test_sweep_index_runs_one_variant_alone(ring_runs, tmp_path):
    root, spec, base, names, _, _ = ring_runs
    outcome, compilations = run_sweep(spec, base, tmp_path / "array", index=3)
    assert outcome == {names[3]: "finished"} and compilations == 0
    assert bitwise_equal(final_params(tmp_path / "array" / names[3], 8), final_params(root / "alone" / names[3], 8))
    with pytest.raises(UserError, match=r"^--sweep_index=6 is not accepted; accepted: 0..5 \(6 variants\)$"):
        sweep_runner.run(spec, base, str(tmp_path / "array"), index=6)


def test_an_experiment_without_a_sweep_is_one_line(tmp_path):
    path = tmp_path / "plain.py"
    path.write_text(textwrap.dedent(RING).split("def get_sweep")[0])
    with pytest.raises(UserError, match="defines no get_sweep"):
        sweep_runner.run(str(path), load_experiment_file(str(path))[0].get_config(), str(tmp_path / "x"))


IMAGES = """
from gan_jax import sweep
from gan_jax.config import base_config


def get_config(arg=None):
    c = base_config()
    c.data.name = "quickstart_digits"
    c.data.source = "embedded"
    c.data.batch_size = 8
    c.model.generator_width = 8
    c.model.discriminator_width = 8
    c.train.steps = 4
    c.train.steps_per_call = 2
    c.train.log_every = 2
    c.train.sample_every = 4
    c.train.checkpoint_every = 4
    c.optimizer.eps = 10.0  # far above |g|: updates lr / eps * m, so near-zero gradients stay near zero
    return c


def get_sweep(arg=None):
    return sweep.product(sweep.axis("optimizer.learning_rate", [0.1, 0.3]), sweep.seeds(2, "data.seed"))
"""


def test_vectorized_image_runs_read_their_own_data_order(tmp_path):
    from gan_jax.experiment import Experiment

    path = tmp_path / "images.py"
    path.write_text(IMAGES)
    base = load_experiment_file(str(path))[0].get_config()
    outcome, compilations = run_sweep(str(path), base, tmp_path / "vectorized")
    assert set(outcome.values()) == {"finished"} and compilations == 1
    module, _ = load_experiment_file(str(path))
    for v in module.get_sweep()[1:3]:  # data seeds 1 and 0 of two rates: each alone, as the plain loop reads it
        n = sweep.run_name(v)
        training.train(sweep.apply(base, v), str(tmp_path / "alone" / n))
        initial = state_tree(Experiment(sweep.apply(base, v), load_train_data=False).init_state())
        diff, where = run_difference(tmp_path / "vectorized" / n, tmp_path / "alone" / n, initial, step=4)
        print(f"{n}: vectorized vs alone {diff:.2e} ({where})")
        assert diff < RUN_TOLERANCE, (n, diff, where)
    # Control: only the data order differs between these two; it follows each run's own data seed.
    a, b = (tmp_path / "vectorized" / sweep.run_name(v) for v in module.get_sweep()[:2])
    diff, where = run_difference(a, b, initial, step=4)
    print(f"control, data seed 1 vs 0: {diff:.2e} ({where})")
    assert diff > 10 * RUN_TOLERANCE


def test_runs_whose_train_states_differ_never_share_a_program(tmp_path, capsys):
    """train.ema_decay is a step hyperparameter, but 0 keeps no EMA copy: a sweep over [0, 0.999]
    trains two programs (it died in a pytree-structure error when they were stacked)."""
    from gan_jax import vectorized

    text = RING.split("def get_sweep")[0] + (
        "def get_sweep(arg=None):\n"
        "    return sweep.product(sweep.axis('train.ema_decay', [0.0, 0.999]), sweep.seeds(2))\n")
    spec = write_experiment(tmp_path, text=text)
    base = load_experiment_file(spec)[0].get_config()
    cfgs = [sweep.apply(base, v) for v in load_experiment_file(spec)[0].get_sweep()]
    assert vectorized.program_key(cfgs[0]) == vectorized.program_key(cfgs[-1])  # the config alone cannot tell
    assert vectorized.why_not_vectorizable([cfgs[0], cfgs[-1]]) == (
        "the runs differ in train.ema_decay (0.0 vs 0.999), which changes the structure of the train state")
    assert vectorized.why_not_vectorizable([cfgs[0], cfgs[1]]) is None  # seeds only
    outcome, compilations = run_sweep(spec, base, tmp_path / "runs")
    assert set(outcome.values()) == {"finished"} and len(outcome) == 4
    assert compilations == 2
    assert "2 groups of runs that can share a program (the runs differ in train.ema_decay" in capsys.readouterr().out
    for name in outcome:
        assert (tmp_path / "runs" / name / "checkpoints" / "8").is_dir()


def test_the_objectives_declare_what_may_differ_within_a_program(tmp_path):
    """vectorized.py reads the step's hyperparameter fields from the objective (Steps.HYPERPARAMETERS):
    penalty weights share a program (ring_runs trains r1:1, r1:0.1 and r1:2 as one), another penalty
    set or model.pack does not, and weight 0 is refused in one line before anything is written."""
    from gan_jax import objectives, vectorized

    spec = write_experiment(tmp_path)
    base = load_experiment_file(spec)[0].get_config()
    fields = vectorized.step_hyperparameter_fields(base)
    assert {"optimizer.learning_rate", "optimizer.discriminator_learning_rate", "loss.penalties",
            "train.ema_decay"} <= set(fields) and "loss.beta" not in fields
    assert set(objectives.get("vae").steps.hyperparameter_fields()) == {
        "optimizer.learning_rate", "optimizer.discriminator_learning_rate", "loss.beta"}
    assert "loss.feature_reconstruction_weight" in objectives.get("vaegan").steps.hyperparameter_fields()
    # Every array the GAN's step reads is declared (lr_NETWORK per network, penalty_NAME per penalty).
    import re

    from gan_jax.experiment import Experiment

    builder = Experiment(sweep.apply(base, {"train.ema_decay": 0.999}), load_train_data=False).builder
    declared = {name for klass in type(builder).__mro__ for name in vars(klass).get("HYPERPARAMETERS", {})}
    patterns = [re.sub(r"[A-Z]+", r"\\w+", name) for name in declared]
    assert set(builder.hyperparameters()) == {"lr_generator", "lr_discriminator", "penalty_r1", "ema_decay"}
    assert all(any(re.fullmatch(p, name) for p in patterns) for name in builder.hyperparameters())

    def reason(a: dict, b: dict):
        return vectorized.why_not_vectorizable([sweep.apply(base, a), sweep.apply(base, b)])

    assert reason({"loss.penalties": "r1:0.01"}, {"loss.penalties": "r1:10", "seed": 1}) is None
    assert reason({"loss.penalties": ""}, {"loss.penalties": "r1:10"}) == (
        "the runs differ in loss.penalties, which changes the compiled step")
    assert reason({"loss.penalties": "", "model.pack": 1}, {"loss.penalties": "", "model.pack": 2}) == (
        "the runs differ in model.pack, which changes the compiled step")
    zero = RING.split("def get_sweep")[0] + (
        "def get_sweep(arg=None):\n    return sweep.axis('loss.penalties', ['r1:0', 'r1:10'])\n")
    spec = write_experiment(tmp_path, text=zero)
    with pytest.raises(UserError, match=r"^sweep variant 'loss.penalties=r1:0': loss.penalties='r1:0': weight '0'"
                                        r" of 'r1' is not a finite number > 0; accepted: [^\n]*$"):
        sweep_runner.run(spec, load_experiment_file(spec)[0].get_config(), str(tmp_path / "zero"))
    assert not (tmp_path / "zero").exists()
