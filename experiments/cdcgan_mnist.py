"""A class-conditional DCGAN on MNIST (cGAN, Mirza & Osindero 2014): the TensorFlow tutorial's DCGAN
(the quickstart's: width 32, no D dropout, Adam 1e-3, G's moving average) whose G reads the one-hot
label appended to z and whose D reads it as 10 constant one-hot channels appended to the image. A few
minutes on a laptop CPU. Sample per class with `launch.py --mode=sample --labels=3` (or 0,1,2, or all);
the sample grids have a row per digit. The run ends with its classifier-space evaluation against the
10,000 test digits and its conditional one (accuracy per class, intra-class FID); the Classification
Accuracy Score with --mode=eval --config.eval.metrics=cas."""

from gan_jax.config import base_config, parse_arg, smoke

# The variants `experiments/NAME.py:VARIANT` accepts (launch.py refuses any other).
VARIANTS = ("smoke",)

SMOKE = {"data.batch_size": 8, "model.generator_width": 8, "model.discriminator_width": 8,
         "eval.num_samples": 500, "eval.num_examples": 500, "eval.every": 0}


def get_config(arg=None):
    arg = parse_arg(arg, smoke=False)
    c = base_config()
    c.objective = "gan"
    c.data.name = "mnist"
    c.data.batch_size = 64
    c.model.name = "dcgan_tutorial"
    c.model.num_classes = 10
    c.model.discriminator_conditioning = "concat"
    c.model.generator_width = 32  # the quickstart's: half the tutorial's channels
    c.model.discriminator_width = 32
    c.model.dropout_rate = 0.0
    c.optimizer.learning_rate = 1e-3
    c.train.ema_decay = 0.999  # grids, samples and the evaluation from G's moving average
    c.train.steps = 6400
    c.train.log_every = 100
    c.train.sample_every = 800
    c.train.checkpoint_every = 1600
    c.eval.num_samples = 10_000  # classifier-space FID/KID/PR/IS against the test split
    c.eval.every = c.train.steps  # evaluate once, at the end
    return smoke(c, SMOKE) if arg.smoke else c
