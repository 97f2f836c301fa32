"""Run a script as two CPU processes under ``accelerate launch`` (gloo), as a user would on N GPUs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_two_cpu_processes(script: Path, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    # accelerate's own `--cpu` launcher starts several CPU processes only through MPI; its torchrun-based
    # launcher (`--multi_gpu`) with ACCELERATE_USE_CPU=true gives a gloo group of CPU processes.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()), str(script)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
