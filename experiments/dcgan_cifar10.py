"""DCGAN of Radford et al. (2015) on CIFAR-10 32x32, batch 64, Adam 2e-4 b1 0.5."""

from gan_jax.config import base_config, smoke

# The variants `experiments/NAME.py:VARIANT` accepts (launch.py refuses any other).
VARIANTS = ("smoke",)

SMOKE = {"data.batch_size": 8, "model.generator_width": 8, "model.discriminator_width": 8, "eval.num_samples": 500,
         "eval.num_examples": 500}


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
    return smoke(c, SMOKE) if arg == "smoke" else c
