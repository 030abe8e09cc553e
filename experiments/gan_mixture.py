"""A GAN on PacGAN's 2D mixtures of Gaussians, fresh points every step: `ring` (default), 8 Gaussians
(std 0.01) on the unit circle, or `grid`, 25 Gaussians (std 0.05) at {-4, -2, 0, 2, 4}^2 (the paper's
protocol, a fixed training set: experiments/pacgan.py). G: 2-400x4-2 with BatchNorm+ReLU; D: three
maxout layers (200 units x 5 pieces); non-saturating loss, Adam(1e-4, b1 0.8), batch 100.

Argument (`experiments/gan_mixture.py:ARG`, comma-separated): `ring` or `grid`; `smoke` (tests)."""

from gan_jax import sweep
from gan_jax.config import base_config, parse_arg, smoke

# The variants `experiments/NAME.py:VARIANT` accepts (launch.py refuses any other).
VARIANTS = ("ring", "grid", "smoke")
MIXTURES = {"ring": "ring8", "grid": "grid25"}  # the argument's word -> data.name (gan_jax/data/synthetic.py)

SMOKE = {"model.generator_width": 16, "model.discriminator_width": 8, "train.steps_per_call": 2,
         "eval.every": 2, "eval.num_samples": 500}


def get_config(arg=None):
    arg = parse_arg(arg, mixture=tuple(MIXTURES), smoke=False)
    c = base_config()
    c.objective = "gan"
    c.data.name = MIXTURES[arg.mixture]
    c.data.source = "synthetic"
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
    c.train.steps = 20_000
    c.train.steps_per_call = 100
    c.train.log_every = 500
    c.train.sample_every = 5000
    c.train.checkpoint_every = 5000
    c.eval.every = 5000  # the PacGAN mode metrics (gan_jax/evaluate/evaluators.py: modes)
    return smoke(c, SMOKE) if arg.smoke else c


def get_sweep(arg=None):
    return sweep.seeds(5)
