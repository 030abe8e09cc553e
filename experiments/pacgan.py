"""PacGAN (Lin et al. 2018), Table 1, on a 2D mixture of Gaussians, a fixed training set of 100,000
points: `ring` (default), 8 Gaussians (std 0.01) on the unit circle, or `grid`, 25 Gaussians (std 0.05)
at {-4, -2, 0, 2, 4}^2. G: 2-400x4-2 with BatchNorm+ReLU, z ~ N(0, I_2); D: three maxout layers
(200 units x 5 pieces), packed (model.pack = m: D judges m samples concatenated); non-saturating loss,
Adam(1e-4, b1 0.8); the modes evaluator on 2,500 samples (modes captured, high-quality fraction,
reverse KL).

Batches: the paper's batch is 100 *packed* examples (100 x m points: the authors' code,
github.com/fjxmlzn/PacGAN, packs m training points drawn with replacement per example), so the sweep
sets data.batch_size = 100 m (this config: m = 1, batch 100); one epoch is 1,000 updates for every m.
Each update draws its points uniformly with replacement from the 100,000 (not in epochs:
gan_jax/objectives/base.py real_examples).

Argument (`experiments/pacgan.py:ARG`, comma-separated): `ring` or `grid`, the mixture; `budget=B` trains
round(400,000 B) generator updates, a fraction B of the paper's 400 epochs (default 0.01: 4,000 updates,
4 epochs; budget=1 is the paper's run); `settings=N` sweeps the first N of GAN, PacGAN2, PacGAN3, PacGAN4
(default 4); `smoke` is a tiny model for 4 updates (tests).

Sweep (launch.py --sweep): GAN and PacGAN2-4, 10 seeds each, as in the paper (smoke: 2 settings x 2
seeds); PUBLISHED holds Table 1's means and standard errors over 10 trials for the report."""

from gan_jax import sweep
from gan_jax.config import base_config, parse_arg, smoke

# The variants `experiments/NAME.py:VARIANT` accepts (launch.py refuses any other).
VARIANTS = ("ring", "grid", "smoke")
MIXTURES = {"ring": "ring8", "grid": "grid25"}  # the argument's word -> data.name (gan_jax/data/synthetic.py)

PAPER_STEPS = 400 * 100_000 // 100  # 400 epochs of 100,000 examples in batches of 100 (packed) examples
PACKS, NAMES = [1, 2, 3, 4], ["GAN", "PacGAN2", "PacGAN3", "PacGAN4"]

# Table 1 as [mean, standard error] over 10 trials; the high-quality percentages as fractions.
# Checked against the table image in the authors' repository (synthetic_data_experiments/results/Table1.png).
PUBLISHED = {
    "ring": {
        "GAN": {"modes/modes_captured": [6.3, 0.5], "modes/high_quality_fraction": [0.982, 0.002],
                "modes/reverse_kl": [0.45, 0.09]},
        "PacGAN2": {"modes/modes_captured": [7.9, 0.1], "modes/high_quality_fraction": [0.956, 0.020],
                    "modes/reverse_kl": [0.07, 0.03]},
        "PacGAN3": {"modes/modes_captured": [7.8, 0.1], "modes/high_quality_fraction": [0.977, 0.003],
                    "modes/reverse_kl": [0.10, 0.02]},
        "PacGAN4": {"modes/modes_captured": [7.8, 0.1], "modes/high_quality_fraction": [0.959, 0.014],
                    "modes/reverse_kl": [0.07, 0.02]},
    },
    "grid": {
        "GAN": {"modes/modes_captured": [17.3, 0.8], "modes/high_quality_fraction": [0.948, 0.007],
                "modes/reverse_kl": [0.70, 0.07]},
        "PacGAN2": {"modes/modes_captured": [23.8, 0.7], "modes/high_quality_fraction": [0.913, 0.008],
                    "modes/reverse_kl": [0.13, 0.04]},
        "PacGAN3": {"modes/modes_captured": [24.6, 0.4], "modes/high_quality_fraction": [0.942, 0.004],
                    "modes/reverse_kl": [0.06, 0.02]},
        "PacGAN4": {"modes/modes_captured": [24.8, 0.2], "modes/high_quality_fraction": [0.936, 0.006],
                    "modes/reverse_kl": [0.04, 0.01]},
    },
}
PUBLISHED_SOURCE = "Lin et al. 2018, Table 1"

SMOKE = {"data.batch_size": 16,  # a multiple of the tests' 8 devices
         "model.generator_width": 16, "model.discriminator_width": 8, "train.steps_per_call": 2,
         "eval.every": 2, "eval.num_samples": 500}


def _arg(arg):
    return parse_arg(arg, mixture=tuple(MIXTURES), smoke=False, budget=0.01, settings=len(PACKS))


def get_config(arg=None):
    arg = _arg(arg)
    c = base_config()
    c.objective = "gan"
    c.data.name = MIXTURES[arg.mixture]
    c.data.source = "synthetic"
    c.data.num_examples = 100_000
    c.data.batch_size = 100
    c.model.name = "mlp_gan"
    c.model.latent_dim = 2
    c.model.generator_width = 400
    c.model.generator_depth = 4
    c.model.generator_batch_norm = True
    c.model.discriminator_width = 200
    c.model.discriminator_depth = 3
    c.model.maxout_pieces = 5
    c.optimizer.learning_rate = 1e-4
    c.optimizer.b1 = 0.8
    c.train.steps = max(1, round(PAPER_STEPS * arg.budget))
    c.train.steps_per_call = 100
    c.train.log_every = max(1, c.train.steps // 100)
    c.train.sample_every = max(1, c.train.steps // 8)
    c.train.checkpoint_every = max(1, c.train.steps // 8)
    c.eval.metrics = "modes"
    c.eval.num_samples = 2500
    c.eval.every = max(1, c.train.steps // 4)  # curves from 4 evaluations; the last is the table's
    return smoke(c, SMOKE) if arg.smoke else c


def get_sweep(arg=None):
    arg = _arg(arg)
    n, batch = (2, 16) if arg.smoke else (arg.settings, 100)
    settings = sweep.zip(sweep.axis("model.pack", PACKS[:n], names=NAMES[:n]),
                         sweep.axis("data.batch_size", [batch * m for m in PACKS[:n]]))
    return sweep.product(settings, sweep.seeds(2 if arg.smoke else 10))


def get_published(arg=None):
    """Table 1's rows of the mixture the argument names (launch.py --sweep writes them to sweep.json)."""
    return PUBLISHED[_arg(arg).mixture]
