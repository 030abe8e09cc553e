"""gan-jax: GAN, DCGAN, (beta-)VAE, IWAE and VAE-GAN training in JAX/Flax.

The notebook API (gan_jax/api.py) is imported on first use, so that `import gan_jax.cpu_runtime` can
still configure XLA before jax is imported."""

__version__ = "0.1.0"
__all__ = ["Run", "load_config", "load_run", "train"]


def __getattr__(name: str):
    if name in __all__:
        from gan_jax import api

        return getattr(api, name)
    raise AttributeError(f"module 'gan_jax' has no attribute {name!r}")
