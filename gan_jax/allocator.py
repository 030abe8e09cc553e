"""Preloads tcmalloc into the scripts' processes: XLA:CPU's memory then stays mapped between steps.

XLA:CPU allocates each execution's temporaries (301 MB for the dcgan_mnist step) with glibc's
malloc, which maps anything over 32 MB fresh from the kernel and unmaps it on free: every step
then page-faults its whole working set again (75,000 faults, 0.13 s of kernel time per step
here), and memory-bound ops such as the im2col gathers run 5x slower than their copy speed.
tcmalloc keeps freed spans for reuse: 1.13x on the dcgan_mnist step (ratio.py, 4 rounds,
2026-11-23). It can only be preloaded when a process starts, so the entry points call
`reexec_with_tcmalloc()` first, which replaces the process (same pid, same arguments) by one with
LD_PRELOAD set. Without the library (Debian/Ubuntu: `apt-get install libtcmalloc-minimal4`), on
other systems, or with GAN_JAX_TCMALLOC=0 it does nothing.
"""

from __future__ import annotations

import os
import sys

LIBRARY_DIRS = ('/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib',
                '/usr/local/lib')
LIBRARY_NAMES = ('libtcmalloc_minimal.so.4', 'libtcmalloc.so.4')


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


def reexec_with_tcmalloc() -> None:
    """Re-executes the current command with tcmalloc in LD_PRELOAD, unless it is loaded already,
    not installed, not Linux, or GAN_JAX_TCMALLOC=0. Call it before anything else happens."""
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
