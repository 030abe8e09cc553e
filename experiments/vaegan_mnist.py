"""VAE-GAN (Larsen et al. 2016) on MNIST 28x28: the TF tutorial's DCGAN generator as the decoder and its
discriminator, whose last hidden layer measures the reconstruction error; a 2-convolution encoder.
Adam 2e-4 b1 0.5 for all three networks (the paper used RMSProp), batch 64, latent 32."""

from gan_jax.config import base_config, smoke

# The variants `experiments/NAME.py:VARIANT` accepts (launch.py refuses any other).
VARIANTS = ("smoke",)

SMOKE = {"data.batch_size": 8, "model.latent_dim": 4, "model.hidden": 16, "model.generator_width": 8,
         "model.discriminator_width": 8, "eval.num_samples": 500, "eval.every": 0}


def get_config(arg=None):
    c = base_config()
    c.objective = "vaegan"
    c.data.name = "mnist"
    c.data.batch_size = 64
    c.model.name = "vaegan_tutorial"
    c.model.latent_dim = 32
    c.model.hidden = 512
    c.loss.name = "non_saturating"
    c.loss.beta = 1.0
    c.loss.feature_reconstruction_weight = 1e-2
    c.optimizer.learning_rate = 2e-4
    c.train.steps = 10_000
    c.train.log_every = 100
    c.train.sample_every = 1000
    c.train.checkpoint_every = 1000
    c.eval.num_samples = 10_000  # classifier-space FID/KID/PR/IS against the 10,000 test images
    c.eval.every = 5000
    return smoke(c, SMOKE) if arg == "smoke" else c
