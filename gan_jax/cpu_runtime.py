"""Process settings that make XLA:CPU faster, applied by the entry points (launch.py, benchmarks).

1. tcmalloc. XLA:CPU allocates each execution's temporaries (301 MB for the dcgan_mnist step) with
   glibc's malloc, which maps anything over 32 MB fresh from the kernel and unmaps it on free: every
   step then page-faults its whole working set again, and memory-bound ops such as the im2col
   gathers run several times slower than a copy. tcmalloc keeps freed spans for reuse (its gain
   on the dcgan_mnist step: README, Performance).
   It can only be preloaded when a process starts, so `configure_process()` replaces the process
   (same pid, same arguments) by one with LD_PRELOAD set, where the library is installed
   (Debian/Ubuntu: `apt-get install libtcmalloc-minimal4`). GAN_JAX_TCMALLOC=0 turns this off.
2. XLA flags. jaxlib 0.10 hands dots and convolutions to YNNPACK by default; its kernels are slower
   than XLA's own at the DCGAN shapes (measured with benchmarks/conv_micro.py and ratio.py; README,
   Performance). Set only for jaxlib 0.10.x, where the flag exists (an unknown XLA flag
   aborts the process), and only if XLA_FLAGS does not already choose; GAN_JAX_XLA_DEFAULTS=0
   turns it off.

Both only take effect before JAX creates its CPU backend, hence at process start.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys

LIBRARY_DIRS = ('/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib',
                '/usr/local/lib')
LIBRARY_NAMES = ('libtcmalloc_minimal.so.4', 'libtcmalloc.so.4')
YNN_FLAG = '--xla_cpu_experimental_ynn_fusion_type'
TESTED_JAXLIB = '0.10.'


def tcmalloc_path() -> str | None:
    """The first tcmalloc shared library found in the usual system folders, or None."""
    for folder in LIBRARY_DIRS:
        for name in LIBRARY_NAMES:
            path = os.path.join(folder, name)
            if os.path.exists(path):
                return path
    return None


def tcmalloc_loaded() -> bool:
    """Whether this process has tcmalloc mapped (Linux; False elsewhere)."""
    try:
        with open('/proc/self/maps') as maps:
            return any('libtcmalloc' in line for line in maps)
    except OSError:
        return False


def xla_flags(current: str) -> str:
    """XLA_FLAGS with the project's CPU default added, unless it already sets that flag."""
    if YNN_FLAG in current:
        return current
    return f'{current} {YNN_FLAG}='.strip()


def _jaxlib_version() -> str:
    try:
        return importlib.metadata.version('jaxlib')
    except importlib.metadata.PackageNotFoundError:
        return ''


def configure_process() -> None:
    """Sets the XLA default and re-executes the current command with tcmalloc preloaded (unless it
    is loaded already, not installed or not Linux). Call it before JAX is used."""
    if os.environ.get('GAN_JAX_XLA_DEFAULTS', '1') != '0' and _jaxlib_version().startswith(TESTED_JAXLIB):
        os.environ['XLA_FLAGS'] = xla_flags(os.environ.get('XLA_FLAGS', ''))
    if not sys.platform.startswith('linux') or os.environ.get('GAN_JAX_TCMALLOC', '1') == '0':
        return
    path = tcmalloc_path()
    preload = os.environ.get('LD_PRELOAD', '')
    if path is None or path in preload.split(':') or tcmalloc_loaded():
        return
    env = dict(os.environ, LD_PRELOAD=f'{path}:{preload}' if preload else path)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, env)
