"""R3GAN (Huang et al. 2025) on class-conditional CIFAR-10 32x32, after the authors' command
(brownvc/R3GAN README: train.py --cond=1 --mirror=1 --preset=CIFAR10 --batch=512): the modernized ResNet
(4 stages of 768 channels, grouped 3x3 convolutions of cardinality 96, 2 inverted bottlenecks per stage,
z 64, no normalization), the RpGAN loss with R1 and R2 penalties (gamma 0.05: loss.penalties
'r1:0.05,r2:0.05' is R3GAN's (gamma / 2)(R1 + R2)) whose gamma follows R3GAN's cosine schedule to 0.005
at train.steps (loss.penalty_schedule), each generated image drawn with its real partner's
class (train.generated_labels='real', as R3GAN's AdversarialTraining passes one set of conditions to
both), Adam 2e-4 (b1 0, b2 0.9), batch 512, one D update per G update, random horizontal flips, samples
from G's moving average.

Not as the authors': their learning rate, Adam's b2 and the average's horizon also follow cosine
schedules over 20M images (2e-4 -> 5e-5, 0.9 -> 0.99, 0 -> 5M images), here held at the start values
(the average at decay 0.9999, about a 5M-image horizon at batch 512); their adaptive augmentation (p up
to 0.55) is not here. train.steps = 39,063 is where their schedules end (20M images);
their command sets no end.

The argument ('smoke', 'seeds=3', comma-separated) sets the sweep's seeds (launch.py --sweep; default 1).
PUBLISHED is the paper's CIFAR-10 FID: StyleGAN's fid50k_full, 50,000 samples against the 50,000 training
images; compare with --mode=eval --config.eval.metrics=inception --config.eval.inception_weights=download
--config.eval.num_samples=50000 --config.data.eval_split=train."""

from gan_jax import sweep
from gan_jax.config import base_config, parse_arg, smoke

# The variants `experiments/NAME.py:VARIANT` accepts (launch.py refuses any other).
VARIANTS = ("smoke",)

PUBLISHED = {"R3GAN": {"inception/fid": 1.96}}
PUBLISHED_SOURCE = "Huang et al. 2025 (R3GAN), CIFAR-10: FID of 50k samples vs the 50k training images"

SMOKE = {"data.batch_size": 8, "model.generator_width": 16, "model.discriminator_width": 16, "model.cardinality": 4,
         "model.blocks_per_stage": 1, "model.latent_dim": 8, "eval.num_samples": 500, "eval.num_examples": 500}


def _arg(arg):
    return parse_arg(arg, smoke=False, seeds=1)


def get_config(arg=None):
    c = base_config()
    c.objective = "gan"
    c.data.name = "cifar10"
    c.data.batch_size = 512
    c.data.random_flip = True
    c.model.name = "r3gan"
    c.model.num_classes = 10
    c.model.latent_dim = 64
    c.model.generator_width = 768
    c.model.discriminator_width = 768
    c.model.cardinality = 96
    c.model.blocks_per_stage = 2
    c.model.expansion = 2
    c.loss.name = "relativistic_pairing"
    c.loss.penalties = "r1:0.05,r2:0.05"
    c.loss.penalty_schedule = "cosine"  # gamma 0.05 -> 0.005 over train.steps
    c.loss.penalty_final_scale = 0.1
    c.train.generated_labels = "real"
    c.optimizer.learning_rate = 2e-4
    c.optimizer.b1 = 0.0
    c.optimizer.b2 = 0.9
    c.train.steps = 39_063
    c.train.ema_decay = 0.9999
    c.train.log_every = 100
    c.train.sample_every = 2000
    c.train.checkpoint_every = 2000
    c.eval.num_samples = 10_000  # classifier-space FID/KID/PR/IS against the 10,000 test images
    return smoke(c, SMOKE) if _arg(arg).smoke else c


def get_sweep(arg=None):
    return sweep.product([{sweep.NAME: "R3GAN"}], sweep.seeds(_arg(arg).seeds))
