"""Evaluation: sample grids and scatters (samples.py) and the VAE's test-set ELBO (vae.py)."""
