"""DCGAN of Radford et al. (2015) on CIFAR-10 32x32, batch 64, Adam 2e-4 b1 0.5."""

from gan_jax.config import base_config

# The variants `experiments/NAME.py:VARIANT` accepts (launch.py refuses any other).
VARIANTS = ("smoke",)


def get_config(arg=None):
    c = base_config()
    c.objective = "gan"
    c.data.name = "cifar10"
    c.data.batch_size = 64
    c.data.random_flip = True
    c.model.name = "dcgan"
    c.model.generator_width = 64
    c.model.discriminator_width = 64
    c.train.steps = 50_000
    c.eval.num_samples = 10_000  # classifier-space FID/KID/PR/IS against the 10,000 test images
    if arg == "smoke":
        c.data.batch_size = 8
        c.model.generator_width = 8
        c.model.discriminator_width = 8
        c.train.steps = 4
        c.train.log_every = 2
        c.train.sample_every = 2
        c.train.checkpoint_every = 2
        c.eval.num_samples = 500
        c.eval.num_examples = 500
    return c
