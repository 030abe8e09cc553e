"""cGAN-PD (Miyato & Koyama 2018: class-conditional BatchNorm in G, the projection discriminator) on
CIFAR-10 32x32 with mimicry's recipe (Lee & Town 2020; kwotsin/mimicry, README "CIFAR-10" training
parameters and torch_mimicry/nets/cgan_pd/cgan_pd_32.py): SNGAN's 32x32 ResNet (z 128, G 256 channels,
D 128) conditioned on the 10 classes, spectral normalization in D (its class embedding included), hinge
loss, 5 D updates per G update, Adam 2e-4 (b1 0, b2 0.9), batch 64, 100,000 G updates, learning rates
decayed linearly to 0.

The argument ('smoke', 'seeds=3', comma-separated) sets the sweep's seeds (launch.py --sweep; default 1).
PUBLISHED holds mimicry's scores: Inception scores of 50,000 samples (random classes) against the 50,000
training images; experiments/sngan_cifar10.py says how to evaluate that way."""

from gan_jax import sweep
from gan_jax.config import base_config, parse_arg, smoke

# The variants `experiments/NAME.py:VARIANT` accepts (launch.py refuses any other).
VARIANTS = ("smoke",)

# mimicry README, CIFAR-10 results, mean +- std over its evaluation runs: FID 10.84 +- 0.03, IS 8.25 +- 0.13,
# KID 0.0070 +- 0.0001; the means, keyed as the inception evaluator writes them.
PUBLISHED = {"cGAN-PD": {"inception/fid": 10.84, "inception/is": 8.25, "inception/kid": 0.0070}}
PUBLISHED_SOURCE = ("mimicry (Lee & Town 2020), README CIFAR-10 table: FID and KID (10 splits) of 50k samples vs "
                    "the 50k training images, IS of 50k samples in 10 splits")

SMOKE = {"data.batch_size": 8, "model.generator_width": 8, "model.discriminator_width": 8, "train.n_critic": 2,
         "eval.num_samples": 500, "eval.num_examples": 500}


def _arg(arg):
    return parse_arg(arg, smoke=False, seeds=1)


def get_config(arg=None):
    c = base_config()
    c.objective = "gan"
    c.data.name = "cifar10"
    c.data.batch_size = 64
    c.model.name = "sngan"
    c.model.num_classes = 10
    c.model.latent_dim = 128
    c.model.generator_width = 256
    c.model.discriminator_width = 128
    c.model.spectral_norm = True
    c.loss.name = "hinge"
    c.optimizer.learning_rate = 2e-4
    c.optimizer.b1 = 0.0
    c.optimizer.b2 = 0.9
    c.optimizer.schedule = "linear"
    c.train.n_critic = 5
    c.train.steps = 100_000
    c.train.log_every = 500
    c.train.sample_every = 5000
    c.train.checkpoint_every = 5000
    c.eval.num_samples = 10_000  # classifier-space FID/KID/PR/IS against the 10,000 test images
    return smoke(c, SMOKE) if _arg(arg).smoke else c


def get_sweep(arg=None):
    return sweep.product([{sweep.NAME: "cGAN-PD"}], sweep.seeds(_arg(arg).seeds))
