"""The GAN of Goodfellow et al. (2014) on MNIST: MLP generator (2 x 1200 ReLU), maxout discriminator
(2 x 240 units, 5 pieces, dropout 0.5), non-saturating loss."""

from gan_jax.config import base_config, smoke

# The variants `experiments/NAME.py:VARIANT` accepts (launch.py refuses any other).
VARIANTS = ("smoke",)

SMOKE = {"data.batch_size": 8, "model.generator_width": 32, "model.discriminator_width": 16, "eval.num_samples": 500,
         "eval.num_examples": 500}


def get_config(arg=None):
    c = base_config()
    c.objective = "gan"
    c.data.name = "mnist"
    c.data.batch_size = 100
    c.model.name = "mlp_gan"
    c.model.latent_dim = 100
    c.model.generator_width = 1200
    c.model.generator_depth = 2
    c.model.discriminator_width = 240
    c.model.discriminator_depth = 2
    c.model.maxout_pieces = 5
    c.model.dropout_rate = 0.5
    c.train.steps = 30_000
    c.train.log_every = 100
    c.eval.num_samples = 10_000  # classifier-space FID/KID/PR/IS against the 10,000 test images
    return smoke(c, SMOKE) if arg == "smoke" else c
