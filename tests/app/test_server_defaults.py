"""The server the README command starts is private by default (README, "Limits and safety")."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_streamlit_reads_the_projects_private_defaults():
    code = ("from streamlit import config; config.get_config_options(force_reparse=True); "
            "print(config.get_option('server.address'), config.get_option('browser.gatherUsageStats'), config.get_option('server.maxUploadSize'))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["127.0.0.1", "False", "32"], "listens on this machine only, sends no usage statistics"
