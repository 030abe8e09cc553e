"""Tests see 8 fake CPU devices (set before jax is imported) so multi-device code runs everywhere.

Tests that read the shared data folder ($GAN_JAX_DATA) take the `data_dir` fixture (or call
`require_data()`): without the folder they are skipped, naming the variable, so that a checkout
without the data still gives a clean run; CI sets GAN_JAX_REQUIRE_DATA=1 so that a missing folder
fails them instead of silently skipping half the suite."""

import functools
import importlib.util
import inspect
import os
import pathlib
import sys
import tempfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


# The processes the tests start (launch.py runs of a few steps, scripts) compile with XLA's LLVM optimizations
# off: compiling is most of their time and -O0 compiles faster. They are checked on what they write, against
# tolerances or against other processes of the same flags, not on speed (benchmarks/ measures that with the
# default flags). pytest's own processes keep the default: their tests train hundreds of steps in process.
PROCESS_XLA_FLAGS = "--xla_backend_optimization_level=0"


def process_env(devices: int = 1, **extra: str) -> dict[str, str]:
    """The environment of a process a test starts (launch.py, a script): the repository importable, unbuffered
    output, PROCESS_XLA_FLAGS, `devices` fake CPU devices, tcmalloc preloaded where installed (as launch.py
    would, without its restart: gan_jax/cpu_runtime.py), `extra` on top."""
    from gan_jax import cpu_runtime  # no JAX import

    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    flags = PROCESS_XLA_FLAGS + (f" --xla_force_host_platform_device_count={devices}" if devices > 1 else "")
    env = {**os.environ, "XLA_FLAGS": flags, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}
    tcmalloc = cpu_runtime.tcmalloc_path()
    wanted = sys.platform.startswith("linux") and env.get("GAN_JAX_TCMALLOC", "1") != "0"
    if tcmalloc and wanted and tcmalloc not in env.get("LD_PRELOAD", "").split(":"):
        env["LD_PRELOAD"] = ":".join(filter(None, [tcmalloc, env.get("LD_PRELOAD")]))
    return {**env, **extra}


os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("GAN_JAX_DATA", str(REPO.parent / "shared" / "data"))
# One persistent compilation cache for the run's processes (the pytest workers and the launch.py runs
# they start inherit it): many tests train the same smoke configs, and compiling their steps is most
# of the suite's time. JAX keys an entry by the program, the XLA flags and its own version, so a hit
# is the executable a fresh compilation gives. One folder per test run: xdist's workers share its id.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    tempfile.gettempdir(), f"gan-jax-tests-jax-cache-{os.environ.get('PYTEST_XDIST_TESTRUNUID', os.getpid())}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.25")  # small enough for the smoke steps

DATA_ENV = "GAN_JAX_DATA"
REQUIRE_ENV = "GAN_JAX_REQUIRE_DATA"


def require_data() -> pathlib.Path:
    """The shared data folder; skips the calling test when it is missing, or fails it when
    GAN_JAX_REQUIRE_DATA=1 (CI must run every test)."""
    # Read at call time, not import time: a test may point GAN_JAX_DATA elsewhere.
    path = pathlib.Path(os.environ.get(DATA_ENV) or REPO.parent / "shared" / "data")
    if path.is_dir():
        return path
    reason = f"needs the shared data folder: {DATA_ENV}={path} does not exist"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1: point {DATA_ENV} at the data, or unset {REQUIRE_ENV} to skip)",
                    pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def data_dir() -> pathlib.Path:
    """The shared data folder, for tests and fixtures of any scope (see `require_data`)."""
    return require_data()


def load_experiment(name: str):
    """The config of `experiments/NAME.py[:VARIANT]`, as launch.py would load it."""
    file, _, variant = name.partition(":")
    spec = importlib.util.spec_from_file_location(f"experiment_{file}", REPO / "experiments" / f"{file}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant or None)


_BUILT: dict[str, object] = {}


def once_per_process(fixture_function):
    """For an expensive module- or session-scoped fixture (trained workdirs under the session's temporary
    folder, valid until the session ends): its value is built once per process and handed out again if
    pytest sets the fixture up a second time. pytest-xdist's workers have set such fixtures up two and
    three times in one run, each time training everything again. Put it under @pytest.fixture."""
    if inspect.isgeneratorfunction(fixture_function):
        raise TypeError(f"{fixture_function.__qualname__}: once_per_process takes a fixture that returns, not yields")
    key = f"{fixture_function.__module__}.{fixture_function.__qualname__}"

    @functools.wraps(fixture_function)
    def built(*args, **kwargs):
        if key not in _BUILT:
            _BUILT[key] = fixture_function(*args, **kwargs)
        return _BUILT[key]

    return built


SLOW_LIST = REPO / "tests" / "slow.txt"


def _slow_entries() -> set[str]:
    lines = SLOW_LIST.read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: the slow tier (tests/slow.txt); the README's command leaves it out")


def pytest_collection_modifyitems(config, items):
    """Marks the tests tests/slow.txt lists `slow`; with the whole suite collected, an entry that names no
    test is an error (so that the list cannot silently stop marking a renamed test)."""
    entries = _slow_entries()
    seen = set()
    for item in items:
        for name in (item.nodeid, item.nodeid.split("::")[0]):
            if name in entries:
                item.add_marker(pytest.mark.slow)
                seen.add(name)
    whole_suite = not config.option.keyword and all(pathlib.Path(a).is_dir() for a in config.args)
    if whole_suite and (stale := sorted(entries - seen)):
        raise pytest.UsageError(f"tests/slow.txt names tests that were not collected: {', '.join(stale[:5])}"
                                f"{' ...' if len(stale) > 5 else ''}; accepted: existing test ids or files")
