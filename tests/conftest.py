"""Tests see 8 fake CPU devices (set before jax is imported) so multi-device code runs everywhere."""

import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

REPO = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault("GAN_JAX_DATA", str(REPO.parent / "shared" / "data"))
