"""Quickstart: the reference DCGAN (TF tutorial) on the 5,000 MNIST digits embedded in the install.
Offline, no download; a few minutes on a laptop CPU. The run ends with its classifier-space evaluation
against the 500 embedded test digits (fid, confident fraction, ...: printed and in metrics.jsonl).

Sweep (launch.py --sweep): the default config over 3 seeds. `search=N` gives round N of the search that
chose the default's settings (each round a separate sweep folder; its results: README.md, Evaluation):

    python launch.py --config experiments/quickstart.py:search=2 --workdir runs/quickstart_search2 --sweep"""

from gan_jax import sweep
from gan_jax.config import base_config, parse_arg, smoke

# The variants `experiments/NAME.py:VARIANT` accepts (launch.py refuses any other).
VARIANTS = ("smoke",)

SMOKE = {"data.batch_size": 8, "eval.num_samples": 500, "eval.num_examples": 500, "eval.every": 0}


def get_config(arg=None):
    arg = parse_arg(arg, smoke=False, search=0)
    c = base_config()
    c.objective = "gan"
    c.data.name = "quickstart_digits"
    c.data.source = "embedded"
    c.data.batch_size = 64
    c.model.name = "dcgan_tutorial"
    c.model.generator_width = 32  # half the tutorial's channels: a quarter of its FLOPs
    c.model.discriminator_width = 32
    c.model.dropout_rate = 0.0  # D without the tutorial's dropout (0.3): a stronger D
    c.optimizer.learning_rate = 1e-3  # G and D; the tutorial's is 1e-4
    c.train.ema_decay = 0.999  # grids, samples and the evaluation from G's moving average
    c.train.steps = 6400
    c.train.log_every = 100
    c.train.sample_every = 800
    c.train.checkpoint_every = 1600
    c.eval.num_samples = 10_000  # classifier-space FID/KID/PR/IS against the test split
    c.eval.every = c.train.steps  # evaluate once, at the end
    return smoke(c, SMOKE) if arg.smoke else c


# The search that chose the settings above, in rounds of settings (run each round in its own sweep folder;
# 3 seeds each, seed 0 of every setting first). The settings name every field they set, so that they
# stay what was run whatever the defaults. The runs of a round that can share a compiled program
# train as one vectorized program (the sweep says which groups it made).
STEPS_3200 = {"train.steps": 3200, "eval.every": 3200}  # the budget of the rounds before round 5
SEARCH = {
    # 1: the quickstart before the search (the tutorial's D dropout, lr 2e-4, no EMA); G's moving
    # average; the learning rate under it
    1: [{**STEPS_3200, "name": "before", "model.dropout_rate": 0.3, "optimizer.learning_rate": 2e-4,
         "train.ema_decay": 0.0},
        {**STEPS_3200, "name": "ema", "model.dropout_rate": 0.3, "optimizer.learning_rate": 2e-4,
         "train.ema_decay": 0.999},
        {**STEPS_3200, "name": "ema,lr5e-4", "model.dropout_rate": 0.3, "optimizer.learning_rate": 5e-4,
         "train.ema_decay": 0.999},
        {**STEPS_3200, "name": "ema,lr1e-3", "model.dropout_rate": 0.3, "optimizer.learning_rate": 1e-3,
         "train.ema_decay": 0.999}],
    # 2: a stronger D at lr 5e-4 with EMA: without dropout, or at twice G's learning rate (TTUR)
    2: [{**STEPS_3200, "name": "ema,lr5e-4,dropout0", "model.dropout_rate": 0.0, "optimizer.learning_rate": 5e-4,
         "train.ema_decay": 0.999},
        {**STEPS_3200, "name": "ema,lr5e-4,d_lr1e-3", "model.dropout_rate": 0.3, "optimizer.learning_rate": 5e-4,
         "optimizer.discriminator_learning_rate": 1e-3, "train.ema_decay": 0.999}],
    # 3: the two best together: lr 1e-3 and a D without dropout
    3: [{**STEPS_3200, "name": "ema,lr1e-3,dropout0", "model.dropout_rate": 0.0, "optimizer.learning_rate": 1e-3,
         "train.ema_decay": 0.999}],
    # 4: further from 3: a D of twice the width, or lr 2e-3
    4: [{**STEPS_3200, "name": "ema,lr1e-3,dropout0,d_width64", "model.dropout_rate": 0.0,
         "optimizer.learning_rate": 1e-3, "model.discriminator_width": 64, "train.ema_decay": 0.999},
        {**STEPS_3200, "name": "ema,lr2e-3,dropout0", "model.dropout_rate": 0.0, "optimizer.learning_rate": 2e-3,
         "train.ema_decay": 0.999}],
    # 5: from 3, the budget the first command can spend: twice the steps (the default above), the
    # learning rate decayed linearly to 0, or both
    5: [{**STEPS_3200, "name": "3,linear", "model.dropout_rate": 0.0, "optimizer.learning_rate": 1e-3,
         "optimizer.schedule": "linear", "train.ema_decay": 0.999},
        {"name": "3,steps6400", "model.dropout_rate": 0.0, "optimizer.learning_rate": 1e-3,
         "train.steps": 6400, "eval.every": 6400, "train.ema_decay": 0.999},
        {"name": "3,steps6400,linear", "model.dropout_rate": 0.0, "optimizer.learning_rate": 1e-3,
         "optimizer.schedule": "linear", "train.steps": 6400, "eval.every": 6400, "train.ema_decay": 0.999}],
    # 6: from 3, D against over-fitting its 4,500 digits: DiffAugment (Zhao et al. 2020) before every
    # D forward, translations alone or with cutout
    6: [{**STEPS_3200, "name": "3,translation", "model.dropout_rate": 0.0, "optimizer.learning_rate": 1e-3,
         "data.diff_augment": "translation", "train.ema_decay": 0.999},
        {**STEPS_3200, "name": "3,translation,cutout", "model.dropout_rate": 0.0, "optimizer.learning_rate": 1e-3,
         "data.diff_augment": "translation,cutout", "train.ema_decay": 0.999}],
}


def get_sweep(arg=None):
    arg = parse_arg(arg, smoke=False, search=0)
    settings = SEARCH[arg.search] if arg.search else [{}]
    return sweep.product(sweep.seeds(3), settings)  # seed 0 of every setting first
