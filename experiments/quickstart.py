"""Quickstart: the reference DCGAN (TF tutorial) on the 5,000 MNIST digits embedded in the install.
Offline, no download; a few minutes on a laptop CPU."""

from gan_jax.config import base_config

# The variants `experiments/NAME.py:VARIANT` accepts (launch.py refuses any other).
VARIANTS = ("smoke",)


def get_config(arg=None):
    c = base_config()
    c.objective = "gan"
    c.data.name = "quickstart_digits"
    c.data.source = "embedded"
    c.data.batch_size = 64
    c.model.name = "dcgan_tutorial"
    c.model.generator_width = 32  # half the tutorial's channels: a quarter of its FLOPs
    c.model.discriminator_width = 32
    c.optimizer.learning_rate = 2e-4
    c.train.steps = 3200  # ~3.5 minutes on a 2-core CPU (2026-11-23); ~half the samples read as digits
    c.train.log_every = 100
    c.train.sample_every = 400
    c.train.checkpoint_every = 800
    c.eval.num_samples = 10_000  # classifier-space FID/KID/PR/IS against the test split
    if arg == "smoke":
        c.data.batch_size = 8
        c.train.steps = 4
        c.train.log_every = 2
        c.train.sample_every = 2
        c.train.checkpoint_every = 2
        c.eval.num_samples = 500
        c.eval.num_examples = 500
    return c
