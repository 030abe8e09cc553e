"""The folds of a run's base key PRNGKey(seed), one place, so that every random draw is disjoint from
the others: step N's key is fold_in(key, N) for N < train.steps, so the named folds sit at the top of
the int32 range where no step reaches."""

INIT = 2**31 - 1  # parameter initialization
FIXED_LATENTS = 2**31 - 2  # the latent batch of every sample grid of a run
SAMPLES = 2**31 - 3  # --mode=sample, then folded with the step
EVAL_SAMPLES = 2**31 - 4  # --mode=eval's samples, then folded with the step
ROLLBACK = 10_000  # rollback r folds ROLLBACK + r into the state's key (not the base key's step range)
