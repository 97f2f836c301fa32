"""kill -9 of a process editing a set (issue #18): the set file stays a whole config, the lock dies with the
process, and what a killed writer left behind never shows as a set."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from app_support import sets as set_ops
from itd_core.erasure_config import ErasureConfig, ModelRef, SAERef

ROOT = str(Path(__file__).resolve().parents[2])
N_LATENTS = 100_000
CONCEPT = "crash"


def template() -> ErasureConfig:
    # no bundle: the child process must start fast, and the store only needs a valid config to write
    return ErasureConfig(model=ModelRef(id_or_path="tiny", layer="text_model.encoder.layers.1"),
                         sae=SAERef(format="native", path="sae", sha256="0" * 64, n_latents=N_LATENTS, d_model=8, k=4))


def next_feature(config: ErasureConfig) -> ErasureConfig:
    """One update: add the next feature id (0, 1, 2, ...), so the file's state says how many updates it holds."""
    count = sum(len(c.features) for c in config.concepts)
    return set_ops.add_features(config, CONCEPT, [count], labels={count: f"feature {count} " + "x" * 200})


def features(config: ErasureConfig) -> list[int]:
    return [f.id for c in config.concepts for f in c.features]


_EDITOR = """
import sys
sys.path.insert(0, {root!r})
sys.path.insert(0, {tests!r})
from test_crash_safety import next_feature, template, features
from app_support.sets import SetStore
store = SetStore({folder!r}, template)
while True:
    _, after = store.update({name!r}, next_feature)
    print(len(features(after)), flush=True)
"""


def _update_within(store: set_ops.SetStore, name: str, seconds: float):
    """``store.update`` from another thread, so that a lock left held would fail the test instead of hanging it."""
    result: list = []
    thread = threading.Thread(target=lambda: result.append(store.update(name, next_feature)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert result, f"an update after the kill did not finish within {seconds} s: the set's lock is still held"
    return result[0]


def test_kill_9_while_updating_a_set_leaves_a_whole_set_and_a_free_lock(tmp_path):
    folder, name = tmp_path / "sets", "crash test"
    store = set_ops.SetStore(folder, template)
    initial = store.create(name)
    script = _EDITOR.format(root=ROOT, tests=str(Path(__file__).parent), folder=str(folder), name=name)
    expected = lambda n: [*range(n)]  # the features after n updates
    rng = random.Random(18)
    pauses = [0.0, 0.0007, 0.0019, 0.0043, 0.011, 0.023]
    for trial in range(6):
        editor = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        reported = []
        for _ in range(rng.randrange(2, 12)):  # some whole updates, then a kill somewhere inside a later one
            line = editor.stdout.readline()
            assert line, f"trial {trial}: the editor died on its own: {editor.stderr.read()}"
            reported.append(int(line))
        time.sleep(pauses[trial % len(pauses)] + rng.uniform(0, 0.002))
        os.kill(editor.pid, signal.SIGKILL)
        editor.wait(timeout=30)
        reported += [int(n) for n in editor.stdout.read().split()]  # and what it printed after those lines
        editor.stdout.close(), editor.stderr.close()
        assert editor.returncode == -signal.SIGKILL
        loaded = store.load(name)  # raises on a truncated or half-written file
        n = len(features(loaded))
        done = max(reported)
        assert n in (done, done + 1), f"trial {trial}: {n} features on disk, {done} updates reported (at most one more in flight)"
        assert features(loaded) == expected(n)
        rebuilt = initial.model_copy(deep=True)
        for _ in range(n):
            rebuilt = next_feature(rebuilt)
        assert loaded.to_json() == rebuilt.to_json(), f"trial {trial}: the file is exactly the state after {n} updates"
        assert store.names() == [name], f"trial {trial}: only the set itself is listed, not a temporary: {sorted(os.listdir(folder))}"
        assert [p for p in os.listdir(folder) if not p.startswith(".")] == [f"{name}.json"], "what a killed writer left is hidden"
        _, after = _update_within(store, name, 10)
        assert features(after) == expected(n + 1) and features(store.load(name)) == expected(n + 1)
    assert len(features(store.load(name))) > 6, "the editor got some updates done before each kill"
