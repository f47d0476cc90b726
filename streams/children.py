"""Child processes that cannot outlive the process that started them.

``micromoment demo`` starts a broker and a worker in their own sessions (so that Ctrl-C
reaches only the demo, which then stops them in order). If the demo itself is killed
hard, nothing would stop them; on Linux the kernel can: ``PR_SET_PDEATHSIG`` sends the
child SIGTERM when its parent dies. Elsewhere this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import sys
from typing import Callable

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1


def _set_pdeathsig() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen`` (``None`` where unsupported)."""
    return _set_pdeathsig if sys.platform.startswith("linux") else None
