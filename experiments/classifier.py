"""The classifiers whose features score generated images (gan_jax/evaluate/classify.py), one per data
set, named by the argument: `mnist` (default), `fashion_mnist` or `cifar10`. A small VGG (3x3
convolutions with max pooling, 128 features), batch 128, Adam 1e-3 with cosine decay, random
translations; the data sets differ in DATASETS: MNIST 5 epochs of its 60,000 training images, two
blocks (32, 64 channels) of one convolution each; Fashion-MNIST 10 epochs, horizontal flips too, two
convolutions a block; CIFAR-10 20 epochs of its 50,000, three blocks (32-64-128), flips and shifts
of up to 4 pixels. Their trained parameters ship in gan_jax/evaluate/classifiers/.

    python launch.py --config experiments/classifier.py:cifar10 --workdir runs/classifier_cifar10"""

from gan_jax.config import base_config, parse_arg, set_fields, smoke

# The variants `experiments/NAME.py:VARIANT` accepts (launch.py refuses any other).
VARIANTS = ("mnist", "fashion_mnist", "cifar10", "smoke")

# data.name -> what its classifier sets over the shared setup of get_config.
DATASETS = {
    "mnist": {"data.random_shift": 2, "data.random_flip": False, "model.widths": (32, 64),
              "model.convs_per_block": 1,  # one 3x3 convolution per block: 4x cheaper to evaluate, still >= 99.3%
              "train.steps": 2_350},
    "fashion_mnist": {"data.random_shift": 2, "data.random_flip": True, "model.widths": (32, 64),
                      "train.steps": 4_700},
    "cifar10": {"data.random_shift": 4, "data.random_flip": True, "model.widths": (32, 64, 128),
                "train.steps": 7_800},
}

SMOKE = {"data.batch_size": 16, "model.widths": (8, 8), "model.feature_dim": 16, "train.steps_per_call": 2,
         "train.sample_every": 4,  # the smoke run's steps: no sample grids, as in the full run
         "eval.num_examples": 500}


def get_config(arg=None):
    arg = parse_arg(arg, data=tuple(DATASETS), smoke=False)
    c = base_config()
    c.objective = "classifier"
    c.data.name = arg.data
    c.data.batch_size = 128
    c.model.name = "classifier_cnn"
    c.model.feature_dim = 128
    c.model.num_classes = 10
    c.optimizer.learning_rate = 1e-3
    c.optimizer.b1 = 0.9
    c.optimizer.schedule = "cosine"
    c.train.steps_per_call = 1
    c.train.log_every = 100
    c.train.checkpoint_every = 1000
    c.eval.metrics = "classifier_accuracy"
    set_fields(c, DATASETS[arg.data])
    c.train.sample_every = c.train.steps  # a classifier writes no sample grids
    return smoke(c, SMOKE) if arg.smoke else c
