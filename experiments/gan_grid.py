"""PacGAN's 2D grid: 25 Gaussians (std 0.05) at {-4, -2, 0, 2, 4}^2, fresh points every step (the
fixed training set of the paper's protocol: experiments/pacgan_grid.py). G: 2-400x4-2 with BatchNorm+ReLU;
D: three maxout layers (200 units x 5 pieces); non-saturating loss, Adam(1e-4, b1 0.8), batch 100."""

from gan_jax import sweep
from gan_jax.config import base_config

# The variants `experiments/NAME.py:VARIANT` accepts (launch.py refuses any other).
VARIANTS = ("smoke",)


def get_config(arg=None):
    c = base_config()
    c.objective = "gan"
    c.data.name = "grid25"
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
    if arg == "smoke":
        c.model.generator_width = 16
        c.model.discriminator_width = 8
        c.train.steps = 4
        c.train.steps_per_call = 2
        c.train.log_every = 2
        c.train.sample_every = 2
        c.train.checkpoint_every = 2
        c.eval.every = 2
        c.eval.num_samples = 500
    return c


def get_sweep(arg=None):
    return sweep.seeds(5)
