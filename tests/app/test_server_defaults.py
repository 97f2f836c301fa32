"""The server the README command starts: private by default, and idle when nobody uses it (README, "Limits and safety")."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app_support.serving import app_server

ROOT = Path(__file__).resolve().parents[2]


def test_streamlit_reads_the_projects_defaults():
    options = ["server.address", "browser.gatherUsageStats", "server.maxUploadSize", "server.fileWatcherType", "server.runOnSave"]
    code = ("from streamlit import config; config.get_config_options(force_reparse=True); "
            f"print(*[config.get_option(o) for o in {options!r}])")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["127.0.0.1", "False", "32", "none", "False"], \
        "listens on this machine only, sends no usage statistics, watches no files"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads CPU time from /proc")
def test_an_idle_server_stays_under_two_percent_of_a_core(tmp_path):
    log = tmp_path / "streamlit.log"
    with app_server({**os.environ, "HOME": str(tmp_path)}, log) as (_, server):
        time.sleep(5)  # start-up work done; nobody opens the app
        before, start = _cpu_seconds(server.pid), time.monotonic()
        time.sleep(20)
        share = (_cpu_seconds(server.pid) - before) / (time.monotonic() - start)
        assert share < 0.02, f"an idle server used {share:.1%} of a core"
    output = log.read_text()
    assert "Inotify" not in output
