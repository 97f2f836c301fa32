"""README's CLI examples run verbatim: every `itd ...` line of its bash blocks, in order, from a copy of the
project's example inputs, on the demo (no real model or SAE is named in them)."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("itd "):
                commands.append(line.strip())
    return commands


def test_the_readme_has_cli_examples_for_every_command():
    verbs = {shlex.split(c)[1] for c in readme_commands()}
    assert {"concept", "calibrate", "classify", "eval", "generate", "sae"} <= verbs


def test_every_readme_cli_example_runs_as_written(tmp_path):
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    for command in readme_commands():
        argv = [sys.executable, "-m", "itd_cli", *shlex.split(command)[1:]]
        result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{command}\n{result.stderr[-2000:]}"
        assert "Traceback" not in result.stderr, command
    assert (tmp_path / "pair.png").is_file() and (tmp_path / "my_sae_itd").is_dir()
