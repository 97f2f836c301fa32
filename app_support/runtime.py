"""One re-entrant lock per loaded bundle.

The app loads a bundle once per process (``st.cache_resource``) and every browser session uses
that same object. Capturing activations registers a forward hook on the shared layer, and
generation installs the erasure hook on the shared text encoder, so two sessions working at the
same moment could see each other's hooks. Every use of a bundle's models in the app runs under
:func:`bundle_lock` (captures take milliseconds; a generation holds it for its whole run).
"""

from __future__ import annotations

import threading
import weakref

_locks: "weakref.WeakKeyDictionary[object, threading.RLock]" = weakref.WeakKeyDictionary()
_guard = threading.Lock()


def bundle_lock(bundle: object) -> threading.RLock:
    """The lock of ``bundle`` (the same object for the same bundle, in every thread)."""
    with _guard:
        lock = _locks.get(bundle)
        if lock is None:
            lock = _locks[bundle] = threading.RLock()
        return lock
