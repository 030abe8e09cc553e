"""AC-GAN (Odena et al. 2017) on MNIST: the TensorFlow tutorial's DCGAN (the quickstart's settings, as
experiments/cdcgan_mnist.py) whose G reads the one-hot label appended to z and whose D does not read
the label but predicts it: a class head beside its real/fake logit (model.discriminator_conditioning=
'auxiliary'). D's loss adds the class cross-entropy on the real and on the generated batch, G's on the
generated one (loss.class_weight_real, _fake, _generator: 1 each, as the paper's L_C), logged as
d_class_real, d_class_fake and g_class. Sample per class with `launch.py --mode=sample --labels=3`. The run
ends with its classifier-space and conditional evaluations (accuracy per class, intra-class FID)."""

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
    c.model.discriminator_conditioning = "auxiliary"
    c.model.generator_width = 32  # the quickstart's: half the tutorial's channels
    c.model.discriminator_width = 32
    c.model.dropout_rate = 0.0
    c.loss.class_weight_real = 1.0
    c.loss.class_weight_fake = 1.0
    c.loss.class_weight_generator = 1.0
    c.optimizer.learning_rate = 1e-3
    c.train.ema_decay = 0.999  # grids, samples and the evaluation from G's moving average
    c.train.steps = 6400
    c.train.log_every = 100
    c.train.sample_every = 800
    c.train.checkpoint_every = 1600
    c.eval.num_samples = 10_000  # classifier-space FID/KID/PR/IS against the test split
    c.eval.every = c.train.steps  # evaluate once, at the end
    return smoke(c, SMOKE) if arg.smoke else c
