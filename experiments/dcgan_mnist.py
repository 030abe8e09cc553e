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
        # the quickstart's shape (half width, batch 64): 1/20 of the full model's CPU time, so that the
        # ablation's 12 runs fit a session on a 2-core machine
        c.data.batch_size = 64
        c.model.generator_width = 32
        c.model.discriminator_width = 32
        c.train.steps = 3200  # 205 epochs of the 1,000 digits
        c.train.sample_every = 800
        c.train.checkpoint_every = 800
        c.eval.every = 3200
        # ADA's p may cross [0, 1] in 4% of the run's images (the paper: 500 kimg of 25,000, 2%), in steps
        # of 64 x 4 / 8,000 = 0.032
        c.data.ada_kimg = 8.0
    return smoke(c, SMOKE) if arg.smoke else c


# The limited variant's settings: no augmentation, DiffAugment (Zhao et al. 2020's CIFAR-10 policy), ADA, all
# with the non-saturating loss; and R3GAN's objective without augmentation: RpGAN with R1 and R2 at
# r3gan_cifar10's gamma (0.05, cosine to a tenth), a resolution of the same order.
LIMITED = sweep.zip(
    sweep.axis("data.diff_augment", ["", "translation,cutout,color", "", ""],
               names=["none", "DiffAugment", "ADA", "RpGAN+R1+R2"]),
    sweep.axis("data.ada_target", [0.0, 0.0, 0.6, 0.0]),
    sweep.axis("loss.name", ["non_saturating"] * 3 + ["relativistic_pairing"]),
    sweep.axis("loss.penalties", [""] * 3 + ["r1:0.05,r2:0.05"]),
    sweep.axis("loss.penalty_schedule", ["constant"] * 3 + ["cosine"]))


def get_sweep(arg=None):
    arg = parse_arg(arg, smoke=False, limited=False)
    return sweep.product(LIMITED, sweep.seeds(3)) if arg.limited else sweep.seeds(3)
