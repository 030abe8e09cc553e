"""SNGAN (Miyato et al. 2018) on CIFAR-10 32x32 with mimicry's recipe (Lee & Town 2020; kwotsin/mimicry,
README "CIFAR-10" training parameters and torch_mimicry/nets/sngan/sngan_32.py): the 32x32 ResNet (z 128,
G 256 channels, D 128), spectral normalization in D, hinge loss, 5 D updates per G update, Adam 2e-4
(b1 0, b2 0.9), batch 64, 100,000 G updates, learning rates decayed linearly to 0, no augmentation.

The argument ('smoke', 'seeds=3', comma-separated) sets the sweep's seeds (launch.py --sweep; default 1).
PUBLISHED holds mimicry's scores of this recipe; they are Inception scores of 50,000 samples against the
50,000 training images, so compare with

    python launch.py --config experiments/sngan_cifar10.py --workdir runs/sngan --mode=eval \\
        --config.eval.metrics=inception --config.eval.inception_weights=download \\
        --config.eval.num_samples=50000 --config.data.eval_split=train

(the default evaluation is classifier-space, 10,000 samples against the 10,000 test images)."""

from gan_jax import sweep
from gan_jax.config import base_config, parse_arg, smoke

# The variants `experiments/NAME.py:VARIANT` accepts (launch.py refuses any other).
VARIANTS = ("smoke",)

# mimicry README, CIFAR-10 results, mean +- std over its evaluation runs: FID 16.77 +- 0.04, IS 7.97 +- 0.06,
# KID 0.0125 +- 0.0001; the means, keyed as the inception evaluator writes them.
PUBLISHED = {"SNGAN": {"inception/fid": 16.77, "inception/is": 7.97, "inception/kid": 0.0125}}
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
    return sweep.product([{sweep.NAME: "SNGAN"}], sweep.seeds(_arg(arg).seeds))
