"""DCGAN of Radford et al. (2015) on 64x64 CelebA faces, batch 64, Adam 2e-4 b1 0.5."""

from gan_jax.config import base_config, smoke

# The variants `experiments/NAME.py:VARIANT` accepts (launch.py refuses any other).
VARIANTS = ("smoke",)

SMOKE = {"data.batch_size": 4, "model.generator_width": 4, "model.discriminator_width": 4}


def get_config(arg=None):
    c = base_config()
    c.objective = "gan"
    c.data.name = "celeba64"
    c.data.batch_size = 64
    c.data.random_flip = True
    c.model.name = "dcgan"
    c.model.generator_width = 64
    c.model.discriminator_width = 64
    c.train.steps = 30_000
    return smoke(c, SMOKE) if arg == "smoke" else c
