"""VAE of Kingma & Welling (2013) on dynamically binarized MNIST: MLP encoder/decoder (2 x 512 ReLU),
latent 32, Bernoulli likelihood; beta = 1 (set loss.beta for a beta-VAE)."""

from gan_jax import sweep
from gan_jax.config import base_config, smoke

# The variants `experiments/NAME.py:VARIANT` accepts (launch.py refuses any other).
VARIANTS = ("smoke",)

SMOKE = {"data.batch_size": 16, "model.hidden": 32, "model.latent_dim": 4, "eval.num_examples": 500, "eval.iwae_k": 10}


def get_config(arg=None):
    c = base_config()
    c.objective = "vae"
    c.data.name = "binarized_mnist"
    c.data.batch_size = 128
    c.model.name = "vae"
    c.model.architecture = "mlp"
    c.model.latent_dim = 32
    c.model.hidden = 512
    c.model.depth = 2
    c.loss.name = "elbo"
    c.loss.likelihood = "bernoulli"
    c.loss.beta = 1.0
    c.optimizer.learning_rate = 1e-3
    c.optimizer.b1 = 0.9
    c.optimizer.schedule = "cosine"
    c.train.steps = 30_000
    c.train.log_every = 200
    c.train.sample_every = 2000
    c.train.checkpoint_every = 2000
    return smoke(c, SMOKE) if arg == "smoke" else c


def get_sweep(arg=None):
    return sweep.seeds(5)
