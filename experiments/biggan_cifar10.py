"""BigGAN (Brock et al. 2019) on CIFAR-10 32x32 as StudioGAN trained it for its benchmark
(POSTECH-CVLab/PyTorch-StudioGAN, src/configs/CIFAR10/BigGAN.yaml and the run's log,
logs/CIFAR10/BigGAN-train-2021_01_15_14_48_48.log): G of 4 x 96 channels, D of 192 (discriminator_width
48: BigGAN's 32x32 D has 4 x D_ch channels), z 80 in 4 hierarchical chunks, a 128-d shared class
embedding, self-attention at 16x16 in both networks, orthogonal initialization, the projection
discriminator, hinge loss, 5 D updates per G update, Adam 2e-4 (b1 0.5, b2 0.999), batch 64, 100,000 G
updates, random horizontal flips, samples from G's moving average (decay 0.9999 from step 1,000).

Not as StudioGAN: G has no spectral normalization (gan-jax's applies to D only), BatchNorm's epsilon is
1e-5 (StudioGAN 1e-4).

The argument ('smoke', 'seeds=3', comma-separated) sets the sweep's seeds (launch.py --sweep; default 1).
PUBLISHED is the run's best evaluation (step 98,000 of evaluations every 2,000 steps): FID of 10,000
samples against the statistics of the 10,000 test images, IS of the 10,000 samples; compare with
--mode=eval --config.eval.metrics=inception --config.eval.inception_weights=download (10,000 samples
against the test images is this config's default)."""

from gan_jax import sweep
from gan_jax.config import base_config, parse_arg, smoke

# The variants `experiments/NAME.py:VARIANT` accepts (launch.py refuses any other).
VARIANTS = ("smoke",)

PUBLISHED = {"BigGAN": {"inception/fid": 8.034, "inception/is": 9.746}}
PUBLISHED_SOURCE = ("StudioGAN BigGAN CIFAR-10 run log (best of its evaluations, step 98k): FID of 10k samples vs "
                    "the 10k test images, IS of the 10k samples")

SMOKE = {"data.batch_size": 8, "model.generator_width": 4, "model.discriminator_width": 4, "model.latent_dim": 8,
         "train.n_critic": 2, "train.ema_start": 2, "eval.num_samples": 500, "eval.num_examples": 500}


def _arg(arg):
    return parse_arg(arg, smoke=False, seeds=1)


def get_config(arg=None):
    c = base_config()
    c.objective = "gan"
    c.data.name = "cifar10"
    c.data.batch_size = 64
    c.data.random_flip = True
    c.model.name = "biggan"
    c.model.num_classes = 10
    c.model.latent_dim = 80
    c.model.generator_width = 96
    c.model.discriminator_width = 48
    c.model.attention_resolution = 16
    c.model.shared_embedding_dim = 128
    c.model.hierarchical_latent = True
    c.model.spectral_norm = True
    # On the CPU the 'auto' lowering (the DFT for the 8x8 and 16x16 maps) makes this step slower than
    # lax's convolutions, unlike SNGAN's (benchmarks/conv_micro.py times the layers alone).
    c.model.conv_impl = "lax"
    c.loss.name = "hinge"
    c.optimizer.learning_rate = 2e-4
    c.optimizer.b1 = 0.5
    c.optimizer.b2 = 0.999
    c.train.n_critic = 5
    c.train.steps = 100_000
    c.train.ema_decay = 0.9999
    c.train.ema_start = 1000
    c.train.log_every = 500
    c.train.sample_every = 5000
    c.train.checkpoint_every = 5000
    c.eval.num_samples = 10_000  # classifier-space FID/KID/PR/IS against the 10,000 test images
    return smoke(c, SMOKE) if _arg(arg).smoke else c


def get_sweep(arg=None):
    return sweep.product([{sweep.NAME: "BigGAN"}], sweep.seeds(_arg(arg).seeds))
