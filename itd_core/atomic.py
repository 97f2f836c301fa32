"""Atomic file writes: write a temp file in the same folder, fsync, then rename over the target,
so that a crash leaves either the old file or the new one, never half of one; the same for a whole folder
(:func:`atomic_folder`); and a lock for read-modify-write of one file across threads and processes."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import glob
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from itd_core.errors import ItdError


@contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Exclusive lock for a read-modify-write of ``path`` (on ``.<name>.lock`` beside it), across threads and processes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


STALE_TEMP_SECONDS = 3600  # a temporary of ours this old was left by a killed writer, not one still writing


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, keeping an existing file's permission bits (a new file gets the
    umask's), and remove temporaries of this file left by writers killed at least an hour ago."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(path, ".tmp")
    mode = os.stat(path).st_mode & 0o7777 if path.exists() else 0o666 & ~_umask()
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as temp:
            temp.write(data)
            temp.flush()
            os.fsync(temp.fileno())
        os.chmod(temp_name, mode)
        os.replace(temp_name, path)
    except OSError as error:  # a full disk, a quota: say which file, and that the old one is intact
        Path(temp_name).unlink(missing_ok=True)
        kept = "left as it was" if path.exists() else "not created"
        raise ItdError(f"cannot write {path}: {error.strerror or error}; the file was {kept}") from None
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def remove_stale_siblings(path: Path, suffix: str) -> None:
    """Remove ``.<name>.*<suffix>`` files or folders beside ``path`` older than :data:`STALE_TEMP_SECONDS`: what writers
    of ``path`` killed mid-write left behind (a younger one may belong to a writer still at work)."""
    now = time.time()
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*{suffix}"):
        try:
            if now - stale.stat().st_mtime > STALE_TEMP_SECONDS:
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        except OSError:
            pass  # another writer's cleanup got there first, or the folder is read-only: nothing to do


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, payload) -> Path:
    """Indented strict JSON (NaN/inf floats at the top level become null), written atomically."""
    import json
    import math

    if isinstance(payload, dict):
        payload = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in payload.items()}
    return atomic_write_text(path, json.dumps(payload, indent=2) + "\n")


@contextmanager
def atomic_folder(folder: str | Path) -> Iterator[Path]:
    """Build a folder in place of ``folder``, atomically: yields an empty folder beside it under a temporary name,
    then (fsynced) puts it in place of ``folder``; on an exception the temporary is removed and ``folder`` is left
    as it was. An existing ``folder`` is replaced whole, so the caller checks it may be. Unfinished builds left by
    writers killed at least an hour ago are removed."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(folder, ".partial")
    tmp = folder.parent / f".{folder.name}.{uuid.uuid4().hex[:8]}.partial"
    tmp.mkdir()
    try:
        yield tmp
        fsync_path(tmp)
        _move_into_place(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def interrupted_swap(folder: str | Path) -> Path | None:
    """The previous ``folder`` that an :func:`atomic_folder` killed between its two renames left (where the system
    has no atomic exchange), if any: it is whole, and renaming it back restores it."""
    folder = Path(folder)
    swapped_out = sorted(folder.parent.glob(f".{glob.escape(folder.name)}.*.old"))
    return swapped_out[-1] if swapped_out else None


def _move_into_place(tmp: Path, folder: Path) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
    if not folder.exists():
        os.replace(tmp, folder)
    elif _exchange(tmp, folder):  # one atomic step: the path always holds a whole folder, old or new
        shutil.rmtree(tmp, ignore_errors=True)
    else:  # no atomic exchange here: swap the old one out, then in; a crash in between leaves interrupted_swap()
        old = folder.parent / f".{folder.name}.{uuid.uuid4().hex[:8]}.old"
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    fsync_path(folder.parent)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where the system cannot."""
    renameat2 = getattr(libc(), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # an old kernel or a file system without it
        return False
    raise OSError(error, os.strerror(error), str(b))


def fsync_path(path: Path) -> None:
    """fsync a file or folder by its path (a folder: its entries); best effort."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def libc() -> ctypes.CDLL | None:
    """The C library on Linux (errno kept for the caller), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
