"""The folds of a run's base key PRNGKey(seed), one place, so that every random draw is disjoint from
the others: step N's key is fold_in(key, N) for N < train.steps <= MAX_STEPS (config.RANGES), so the
named folds and the rollback folds sit above MAX_STEPS, at the top of the int32 range where no step
reaches (tests/test_keys.py checks the table)."""

MAX_STEPS = 2**30  # the largest train.steps accepted
MAX_ROLLBACKS = 1000  # the largest train.max_rollbacks accepted

INIT = 2**31 - 1  # parameter initialization
FIXED_LATENTS = 2**31 - 2  # the latent batch of every sample grid of a run
SAMPLES = 2**31 - 3  # --mode=sample, then folded with the step
EVAL_SAMPLES = 2**31 - 4  # --mode=eval's samples, then folded with the step
TRAINING_SET = 2**31 - 5  # 2D mixtures with data.num_examples: example j's key folds in j (data/synthetic.py)
INTERPOLATIONS = 2**31 - 6  # the latent pairs of the report's interpolation grid (gan_jax/pictures.py)
# Rollback r (1..MAX_ROLLBACKS) folds ROLLBACK + r into the state's key: a new stream, whose keys are
# none of the old stream's (a fold below MAX_STEPS would make it the old stream's step key).
ROLLBACK = 2**31 - 8 - MAX_ROLLBACKS

# Folds of step N's key fold_in(base, N): each update of a step draws from its own.
GENERATOR_UPDATE = 1  # the GAN generator's update
CRITIC_UPDATE = 10  # critic update i of a step: CRITIC_UPDATE + i (i < n_critic)
# Folds of an update's key (a VAE step's key is its one update's key).
REAL = 0  # the real batch (mixture draw; binarization folds in the example index)
LATENT = 1  # the generator's latents, the VAE's reparameterization noise
D_REAL = 2  # D's forward on the real batch (dropout; DiffAugment folds AUGMENT)
D_FAKE = 3  # D's forward on the generated batch
D_PENALTY = 4  # the penalties' D forwards
PENALTIES = 5  # the penalties' own draws (penalty j folds in j)
D_PRIOR = 6  # VAE-GAN: D's forward on the decoded prior samples
PRIOR = 7  # VAE-GAN: the prior latents
EMA_STATISTICS = 8  # the latents on which the averaged generator's BatchNorm statistics are gathered
GENERATED_LABELS = 9  # class-conditional models: the generated batch's classes (of the EMA statistics' key there)
ZCR = 10  # zCR's latent perturbations (objectives/gan_updates.py)
# Folds of the real batch's key and of a D forward's key.
FLIP = 1  # random horizontal flips
AUGMENT = 1  # DiffAugment's draws in a D forward
ADA = 2  # adaptive augmentation's draws in a D forward (gan_jax/ops/ada.py)
