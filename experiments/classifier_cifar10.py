"""The CIFAR-10 classifier whose features score generated CIFAR-10 images (gan_jax/evaluate/classify.py):
20 epochs of the 50,000 training images, batch 128, Adam 1e-3 with cosine decay, random translations
(up to 4 pixels) and horizontal flips. Its trained parameters ship in gan_jax/evaluate/classifiers/."""

from gan_jax.config import base_config, smoke

# The variants `experiments/NAME.py:VARIANT` accepts (launch.py refuses any other).
VARIANTS = ("smoke",)

SMOKE = {"data.batch_size": 16, "model.widths": (8, 8), "model.feature_dim": 16, "train.steps_per_call": 2,
         "train.sample_every": 4,  # the smoke run's steps: no sample grids, as above
         "eval.num_examples": 500}


def get_config(arg=None):
    c = base_config()
    c.objective = "classifier"
    c.data.name = "cifar10"
    c.data.batch_size = 128
    c.data.random_shift = 4
    c.data.random_flip = True
    c.model.name = "classifier_cnn"
    c.model.widths = (32, 64, 128)
    c.model.feature_dim = 128
    c.model.num_classes = 10
    c.optimizer.learning_rate = 1e-3
    c.optimizer.b1 = 0.9
    c.optimizer.schedule = "cosine"
    c.train.steps = 7_800
    c.train.steps_per_call = 1
    c.train.log_every = 100
    c.train.checkpoint_every = 1000
    c.train.sample_every = c.train.steps  # a classifier writes no sample grids
    c.eval.metrics = "classifier_accuracy"
    return smoke(c, SMOKE) if arg == "smoke" else c
