"""gan-jax: GAN, DCGAN and (beta-)VAE training in JAX/Flax."""

__version__ = "0.1.0"
