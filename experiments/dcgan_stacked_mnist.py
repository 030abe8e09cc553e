"""Stacked MNIST (Metz et al. 2017; PacGAN's mode-collapse benchmark): three independent MNIST digits as
the R, G, B channels, 1,000 modes. The TF tutorial's DCGAN (full width), batch 64, Adam 2e-4 b1 0.5;
scored on 26,000 samples (PacGAN's protocol), each channel read by the shipped mnist classifier."""

from gan_jax.config import base_config, smoke

# The variants `experiments/NAME.py:VARIANT` accepts (launch.py refuses any other).
VARIANTS = ("smoke",)

SMOKE = {"data.batch_size": 8, "model.generator_width": 8, "model.discriminator_width": 8, "eval.num_samples": 500,
         "eval.every": 0}


def get_config(arg=None):
    c = base_config()
    c.objective = "gan"
    c.data.name = "stacked_mnist"
    c.data.batch_size = 64
    c.model.name = "dcgan_tutorial"
    c.loss.name = "non_saturating"
    c.optimizer.learning_rate = 2e-4
    c.train.steps = 10_000
    c.train.log_every = 100
    c.train.sample_every = 1000
    c.train.checkpoint_every = 1000
    c.eval.metrics = "stacked_modes"
    c.eval.num_samples = 26_000
    c.eval.every = 5000
    return smoke(c, SMOKE) if arg == "smoke" else c
