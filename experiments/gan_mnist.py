"""The GAN of Goodfellow et al. (2014) on MNIST: MLP generator (2 x 1200 ReLU), maxout discriminator
(2 x 240 units, 5 pieces, dropout 0.5), non-saturating loss.

`gan_mnist.py` trains it with Adam for 30,000 updates; `gan_mnist.py:paper` follows the authors' mnist.yaml
(github.com/goodfeli/adversarial) where it states the protocol: the first 50,000 training digits (the last
10,000 held out, as the Parzen evaluator's validation digits), uniform initial weights (G +-0.05, D +-0.005),
D's input dropout 0.2, pylearn2's SGD with momentum 0.5 rising linearly to 0.7 from epoch 1 to 250 and the
learning rate 0.1 divided by 1.000004 per batch, down to 1e-6. pylearn2 alternates batches between D and G
(one D update, one G update), and its schedules count batches and epochs of 500 batches: one of our steps
(a D update, then a G update) is two of its batches, so the decay per update is 1.000004^2 and an epoch
is 250 updates. The paper trains until stopped by hand; 250 epochs (the momentum's saturation, 62,500
updates) is our budget. The networks compute on pixels in [0, 1] as theirs (model.unit_pixels: a sigmoid
G, D reading (x + 1) / 2), the data and samples staying in [-1, 1]. Where it differs: G's output bias
starts at 0 (theirs at the logits of the training pixels' marginals)."""

from gan_jax.config import base_config, parse_arg, smoke

# The variants `experiments/NAME.py:VARIANT` accepts (launch.py refuses any other).
VARIANTS = ("smoke", "paper")

SMOKE = {"data.batch_size": 8, "model.generator_width": 32, "model.discriminator_width": 16, "eval.num_samples": 500,
         "eval.num_examples": 500}


def get_config(arg=None):
    a = parse_arg(arg, paper=False, smoke=False)
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
    if a.paper:
        c.data.split = "train[:50000]"
        c.model.generator_init_range = 0.05
        c.model.discriminator_init_range = 0.005
        c.model.input_dropout_rate = 0.2
        c.model.unit_pixels = True
        c.optimizer.name = "momentum"
        c.optimizer.learning_rate = 0.1
        c.optimizer.schedule = "exponential"
        c.optimizer.decay_factor = 1.000004**2
        c.optimizer.min_learning_rate = 1e-6
        c.optimizer.momentum = 0.5
        c.optimizer.final_momentum = 0.7
        c.optimizer.momentum_start = 250
        c.optimizer.momentum_saturate = 250 * 250
        c.train.steps = 250 * 250
        c.train.checkpoint_every = 2_500
        c.train.sample_every = 2_500
        c.eval.metrics = "parzen,classifier_space"
    return smoke(c, SMOKE) if a.smoke else c
