"""Burda, Grosse & Salakhutdinov 2015 (IWAE), Table 1, MNIST, one stochastic layer: the VAE and the IWAE
trained with k = 1, 5, 50 samples, test NLL estimated with k = 5,000 importance samples.

Architecture 784-200-200-50 with tanh units (encoder 784-200-200 -> diagonal Gaussian over 50 latents;
decoder 50-200-200-784), Bernoulli likelihood, dynamically binarized MNIST, batch 20, Adam (b1 0.9,
b2 0.999, eps 1e-4), the paper's schedule: stage i = 0..7 lasts 3^i passes over the 60,000 training digits
at learning rate 0.001 * 10^(-i/7), 3,280 passes in all (optimizer.schedule='exponential_stages').
"VAE, k" trains on the ELBO averaged over k latent samples (loss.elbo_samples = k), "IWAE, k" on the
k-sample importance-weighted bound (loss.iwae_k = k); with k = 1 both are the same ELBO.

The argument ('smoke', 'budget=0.01', 'seeds=3', 'test_examples=1000', comma-separated) sets the
budget, a fraction of the paper's 3,280 passes: train.steps = 3,280 * 60,000 / 20 * budget (default
0.001: 9,840 updates; budget=1 is the paper's 9,840,000), the 8 stages keeping their proportions at
any budget; the seeds per setting of the sweep (default 1: the paper reports one run per setting); and
the test digits of the final estimate (default all 10,000):

    python launch.py --config experiments/vae_iwae_mnist.py:budget=0.01 --workdir runs/iwae --sweep

The final evaluation (eval.every = train.steps) runs the decoder 5,000 times on each of the 10,000 test
digits (50 million decoder rows; on a CPU it takes longer than training at budget 0.001 with k <= 5), so
it runs once, at the end (test_examples, or eval.iwae_k, make a cheaper estimate)."""

from gan_jax import sweep
from gan_jax.config import base_config, parse_arg, smoke

# The variants `experiments/NAME.py:VARIANT` accepts (launch.py refuses any other).
VARIANTS = ("smoke",)

PAPER_PASSES = 3280  # sum of 3^i, i = 0..7
TRAIN_EXAMPLES = 60_000
BATCH = 20

# Test NLL in nats (k = 5,000), MNIST, one stochastic layer; keyed as the vae_likelihood evaluator
# writes it to metrics.jsonl.
METRIC = "vae_likelihood/test_nll_iwae_nats"
PUBLISHED = {"VAE-k1": {METRIC: 86.76}, "VAE-k5": {METRIC: 86.47}, "VAE-k50": {METRIC: 86.35},
             "IWAE-k1": {METRIC: 86.76}, "IWAE-k5": {METRIC: 85.54}, "IWAE-k50": {METRIC: 84.78}}
PUBLISHED_SOURCE = "Burda et al. 2015, Table 1"

SETTINGS = ([{sweep.NAME: f"VAE-k{k}", "loss.elbo_samples": k, "loss.iwae_k": 1} for k in (1, 5, 50)]
            + [{sweep.NAME: f"IWAE-k{k}", "loss.elbo_samples": 1, "loss.iwae_k": k} for k in (1, 5, 50)])

SMOKE = {"model.hidden": 16, "model.latent_dim": 4, "eval.every": 4, "eval.num_examples": 100, "eval.iwae_k": 10}


def _arg(arg):
    return parse_arg(arg, smoke=False, budget=0.001, seeds=1, test_examples=10_000)


def get_config(arg=None):
    arg = _arg(arg)
    c = base_config()
    c.objective = "vae"
    c.data.name = "binarized_mnist"
    c.data.batch_size = BATCH
    c.model.name = "vae"
    c.model.architecture = "mlp"
    c.model.hidden = 200
    c.model.depth = 2
    c.model.latent_dim = 50
    c.model.activation = "tanh"
    c.loss.name = "elbo"
    c.loss.likelihood = "bernoulli"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.b1 = 0.9
    c.optimizer.b2 = 0.999
    c.optimizer.eps = 1e-4
    c.optimizer.schedule = "exponential_stages"
    c.train.steps = round(PAPER_PASSES * TRAIN_EXAMPLES / BATCH * arg.budget)
    c.train.log_every = 500
    c.train.sample_every = 5000
    c.train.checkpoint_every = 5000
    c.eval.metrics = "vae_likelihood"
    c.eval.every = c.train.steps  # the final test NLL only
    c.eval.iwae_k = 5000
    c.eval.num_examples = arg.test_examples
    return smoke(c, SMOKE) if arg.smoke else c


def get_sweep(arg=None):
    return sweep.product(SETTINGS, sweep.seeds(_arg(arg).seeds))
