import json
import multiprocessing
import os
import time

from itd_core.atomic import STALE_TEMP_SECONDS, atomic_write_text, file_lock


def test_an_existing_files_mode_is_kept(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{}")
    path.chmod(0o644)
    atomic_write_text(path, '{"a": 1}')
    assert path.stat().st_mode & 0o777 == 0o644 and json.loads(path.read_text()) == {"a": 1}
    path.chmod(0o600)
    atomic_write_text(path, "{}")
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_new_file_gets_the_umasks_mode_not_0600(tmp_path):
    previous = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "new.json", "{}")
    finally:
        os.umask(previous)
    assert (tmp_path / "new.json").stat().st_mode & 0o777 == 0o644


def test_stale_temporaries_of_the_file_are_removed_and_fresh_ones_kept(tmp_path):
    path = tmp_path / "config.json"
    stale, fresh, other = tmp_path / ".config.json.abc.tmp", tmp_path / ".config.json.def.tmp", tmp_path / ".other.json.abc.tmp"
    for temp in (stale, fresh, other):
        temp.write_text("partial")
    old = time.time() - STALE_TEMP_SECONDS - 60
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    atomic_write_text(path, "{}")
    assert not stale.exists() and fresh.exists(), "a fresh temporary may belong to a writer still at work"
    assert other.exists(), "only this file's temporaries"


def _increment(path, times):
    for _ in range(times):
        with file_lock(path):
            count = json.loads(path.read_text())["count"] if path.exists() else 0
            atomic_write_text(path, json.dumps({"count": count + 1}))


def test_file_lock_serialises_read_modify_write_across_processes(tmp_path):
    path = tmp_path / "counter.json"
    processes = [multiprocessing.get_context("spawn").Process(target=_increment, args=(path, 50)) for _ in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    assert json.loads(path.read_text()) == {"count": 150}


_REWRITER = """
import sys
sys.path.insert(0, {root!r})
from pathlib import Path
from itd_core.atomic import atomic_write_text
from itd_core.sae import SAEConfig, TopKSAE
from itd_core.sae_formats import save_sae
config, folder = Path({config!r}), Path({folder!r})
saes = [TopKSAE.random(SAEConfig(d_model=8, n_latents=32, k=4), seed=s) for s in (1, 2)]
for i in range(100000):
    atomic_write_text(config, '{{"version": %d, "padding": "%s"}}' % (i, "x" * 20000))
    save_sae(saes[i % 2], folder, format="native")
    print(i, flush=True)
"""


def test_kill_9_at_random_moments_leaves_a_whole_config_and_a_whole_sae(tmp_path):
    import random
    import subprocess
    import sys
    from pathlib import Path

    from itd_core.sae_formats import load_sae

    root = str(Path(__file__).resolve().parents[2])
    config, folder = tmp_path / "erasure.json", tmp_path / "sae"
    script = _REWRITER.format(root=root, config=str(config), folder=str(folder))
    rng = random.Random(0)
    for trial in range(8):
        writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for _ in range(rng.randrange(1, 6)):  # a few whole rounds, then a kill somewhere inside the next ones
            writer.stdout.readline()
        time.sleep(rng.uniform(0, 0.05))
        os.kill(writer.pid, 9)
        writer.wait(timeout=30)
        assert json.loads(config.read_text())["version"] >= 0, f"trial {trial}: the config is whole"
        assert load_sae(folder).n_latents == 32, f"trial {trial}: the SAE folder holds a whole checkpoint"
