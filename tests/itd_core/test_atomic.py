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
