"""kill -9 of a process writing to the generation cache (issue #18): a read afterwards is the entry as written,
image and meta together, or a miss; never a damaged image, an exception, or one entry's image with another's meta."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from itd_core.pipeline import GenerationCache

ROOT = str(Path(__file__).resolve().parents[2])
SHARED = 3  # keys written over and over, as generate_side_by_side rewrites both keys of a pair when one of them missed


def image(version: int) -> Image.Image:
    """A noise image (its PNG is some 50 kB and takes a few ms to encode and write), one per version."""
    return Image.fromarray(np.random.default_rng(version).integers(0, 256, (128, 128, 3), dtype=np.uint8), "RGB")


def meta(version: int) -> dict:
    return {"version": version, "edited": version % 2 == 0, "scores": {"concept": version / 7}, "triggered": []}


# Forks one writer per trial, so a trial costs milliseconds, not the second of importing torch: reads a start version
# on stdin, forks a writer that puts entries from that version on, and prints "reaped" once the test has killed it.
_FORKER = """
import os, sys
sys.path.insert(0, {root!r})
sys.path.insert(0, {tests!r})
from test_generation_cache_crash import SHARED, image, meta
from itd_core.pipeline import GenerationCache
cache = GenerationCache({folder!r})
for line in sys.stdin:
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        try:
            print("pid", os.getpid(), flush=True)
            version = int(line)
            while True:
                cache.put(f"entry{{version:06d}}", image(version), meta(version))
                print("shared", version, flush=True)
                cache.put(f"shared{{version % SHARED}}", image(version), meta(version))
                print("done", version, flush=True)
                version += 1
        finally:
            os._exit(1)
    os.waitpid(pid, 0)
    print("reaped", flush=True)
"""


def check_entry(cache: GenerationCache, key: str, version: int | None = None):
    """The entry's image and meta as one put wrote them (of ``version``, or of the version its meta names), or None."""
    got = cache.get(key)
    if got is None:
        return None
    picture, info = got
    version = info["version"] if version is None else version
    assert info == meta(version), f"{key}: meta of another entry"
    assert picture.size == (128, 128) and picture.tobytes() == image(version).tobytes(), \
        f"{key}: the image is not the one written with its meta (meta says version {version})"
    return version


def test_kill_9_while_writing_leaves_only_whole_entries_and_the_cache_writable(tmp_path):
    cache = GenerationCache(tmp_path)
    forker = subprocess.Popen([sys.executable, "-c", _FORKER.format(root=ROOT, tests=str(Path(__file__).parent), folder=str(tmp_path))],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    start, served_shared, writer = 0, 0, None
    try:
        for trial in range(48):
            forker.stdin.write(f"{start}\n")
            forker.stdin.flush()
            done, put_shared = [start - 1], 0
            while True:  # a few whole puts, then the kill at one of 16 moments through a put of a rewritten key
                line = forker.stdout.readline().split()
                assert line, f"trial {trial}: the writer died on its own: {forker.stderr.read()}"
                if line[0] == "pid":
                    writer = int(line[1])
                elif line[0] == "done":
                    done.append(int(line[1]))
                elif line[0] == "shared":
                    put_shared += 1
                    if put_shared == 1 + trial % 3:
                        break
            time.sleep((trial % 16) * 0.00025)
            os.kill(writer, signal.SIGKILL)
            for line in forker.stdout:  # the killed writer may leave half a line on the pipe, before "reaped"
                done += [int(n) for n in re.findall(r"done (\d+)\s", line)]
                if "reaped" in line:
                    writer = None
                    break
            done = max(done)
            for version in range(start, done + 1):
                assert check_entry(cache, f"entry{version:06d}", version) == version, f"trial {trial}: a completed put is served"
            check_entry(cache, f"entry{done + 1:06d}", done + 1)  # the put in flight: whole or a miss
            assert cache.get(f"entry{done + 2:06d}") is None
            for k in range(SHARED):
                version = check_entry(cache, f"shared{k}")
                assert version is None or version % SHARED == k
                served_shared += version is not None
            assert all(p.name.startswith(".") or p.suffix in (".png", ".json") for p in cache.folder.iterdir())
            # writing again works, over the entries the writer was killed in too
            for key, version in ((f"entry{done + 1:06d}", done + 1), (f"shared{(done + 1) % SHARED}", done + 1), (f"entry{done + 2:06d}", done + 2)):
                cache.put(key, image(version), meta(version))
                assert check_entry(cache, key, version) == version
            start = done + 3
    finally:
        if writer is not None:  # a test failure before the kill: the writer must not outlive the test
            with contextlib.suppress(ProcessLookupError):
                os.kill(writer, signal.SIGKILL)
        forker.kill()
        forker.wait(timeout=30)
        forker.stdin.close(), forker.stdout.close(), forker.stderr.close()
    assert served_shared > 0
