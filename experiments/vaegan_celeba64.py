"""VAE-GAN (Larsen et al. 2016) on 64x64 CelebA faces: Radford's DCGAN generator (decoder) and
discriminator, an encoder of three 5x5 stride-2 convolutions (64, 128, 256) with BatchNorm and ReLU and
a 2048-unit layer, as in the paper; latent 128, batch 64, random flips. Adam 3e-4 b1 0.5 (the paper:
RMSProp at 3e-4)."""

from gan_jax.config import base_config, smoke

# The variants `experiments/NAME.py:VARIANT` accepts (launch.py refuses any other).
VARIANTS = ("smoke",)

SMOKE = {"data.batch_size": 4, "model.latent_dim": 8, "model.hidden": 16, "model.generator_width": 4,
         "model.discriminator_width": 4}


def get_config(arg=None):
    c = base_config()
    c.objective = "vaegan"
    c.data.name = "celeba64"
    c.data.batch_size = 64
    c.data.random_flip = True
    c.model.name = "vaegan_dcgan"
    c.model.latent_dim = 128
    c.model.hidden = 2048
    c.model.generator_width = 64
    c.model.discriminator_width = 64
    c.loss.name = "non_saturating"
    c.loss.beta = 1.0
    c.loss.feature_reconstruction_weight = 1e-3
    c.optimizer.learning_rate = 3e-4
    c.train.steps = 30_000
    return smoke(c, SMOKE) if arg == "smoke" else c
