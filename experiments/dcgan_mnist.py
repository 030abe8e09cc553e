"""The reference model: the DCGAN of the TensorFlow tutorial on MNIST 28x28, batch 256, Adam 1e-4
(b1 0.5 as in Radford et al.; the tutorial uses Keras' 0.9), non-saturating loss."""

from gan_jax import sweep
from gan_jax.config import base_config, smoke

# The variants `experiments/NAME.py:VARIANT` accepts (launch.py refuses any other).
VARIANTS = ("smoke",)

SMOKE = {"data.batch_size": 8, "train.steps": 6, "train.sample_every": 3, "train.checkpoint_every": 3,
         "eval.num_samples": 500, "eval.num_examples": 500, "eval.every": 0}


def get_config(arg=None):
    c = base_config()
    c.objective = "gan"
    c.data.name = "mnist"
    c.data.batch_size = 256
    c.model.name = "dcgan_tutorial"
    c.loss.name = "non_saturating"
    c.optimizer.learning_rate = 1e-4
    c.train.steps = 10_000
    c.train.log_every = 50
    c.train.sample_every = 500
    c.train.checkpoint_every = 500
    c.eval.num_samples = 10_000  # classifier-space FID/KID/PR/IS against the 10,000 test images
    c.eval.every = 2000
    return smoke(c, SMOKE) if arg == "smoke" else c


def get_sweep(arg=None):
    return sweep.seeds(3)
