"""The reference model: the DCGAN of the TensorFlow tutorial on MNIST 28x28, batch 256, non-saturating
loss, Adam (b1 0.5 as in Radford et al.; the tutorial uses Keras' 0.9), with what the quickstart's
search found (README, Evaluation): G's moving average, D without dropout, learning rate 1e-3 (the
tutorial: dropout 0.3, 1e-4, no average, which benchmarks/bench.py runs beside the peers)."""

from gan_jax import sweep
from gan_jax.config import base_config, parse_arg, smoke

# The variants `experiments/NAME.py:VARIANT` accepts (launch.py refuses any other).
VARIANTS = ("smoke", "limited")

SMOKE = {"data.batch_size": 8, "train.steps": 6, "train.sample_every": 3, "train.checkpoint_every": 3,
         "eval.num_samples": 500, "eval.num_examples": 500, "eval.every": 0}


def get_config(arg=None):
    arg = parse_arg(arg, smoke=False, limited=False)
    c = base_config()
    c.objective = "gan"
    c.data.name = "mnist"
    c.data.batch_size = 256
    c.model.name = "dcgan_tutorial"
    c.loss.name = "non_saturating"
    c.model.dropout_rate = 0.0  # D without the tutorial's dropout (0.3): a stronger D
    c.optimizer.learning_rate = 1e-3  # G and D; the tutorial's is 1e-4
    c.train.ema_decay = 0.999  # grids, samples and the evaluation from G's moving average
    c.train.steps = 10_000
    c.train.log_every = 50
    c.train.sample_every = 500
    c.train.checkpoint_every = 500
    c.eval.num_samples = 10_000  # classifier-space FID/KID/PR/IS against the 10,000 test images
    c.eval.every = 2000
    if arg.limited:  # Karras et al. 2020's limited-data setting at MNIST's scale: the first 1,000 digits
        c.data.num_examples = 1000
        c.train.steps = 4000
        # ADA's p may cross [0, 1] in 2% of the run's images, as their 500 kimg of 25,000 (when it is on)
        c.data.ada_kimg = 20.0
    return smoke(c, SMOKE) if arg.smoke else c


# The limited variant's augmentation settings: none, DiffAugment (Zhao et al. 2020's CIFAR-10 policy), ADA.
AUGMENTATIONS = sweep.zip(sweep.axis("data.diff_augment", ["", "translation,cutout,color", ""],
                                     names=["none", "DiffAugment", "ADA"]),
                          sweep.axis("data.ada_target", [0.0, 0.0, 0.6]))


def get_sweep(arg=None):
    arg = parse_arg(arg, smoke=False, limited=False)
    return sweep.product(AUGMENTATIONS, sweep.seeds(3)) if arg.limited else sweep.seeds(3)
