"""The app as a headless server on a free local port: for the browser tests and the app's benchmark."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from itd_core.errors import ItdError

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def app_server(env: Mapping[str, str], log_path: Path, *, start_timeout: float = 120.0, options: Sequence[str] = ()) -> Iterator[tuple[str, subprocess.Popen]]:
    """``streamlit run app.py`` on 127.0.0.1 and a free port, output in ``log_path``; yields (url, process) once the
    server answers its health check, and stops it afterwards. Raises :class:`ItdError` (with the log's end) when it
    does not start within ``start_timeout`` seconds."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true", "--server.port", str(port),
             "--server.address", "127.0.0.1", *options],
            cwd=ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + start_timeout
            while not _healthy(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise ItdError(f"streamlit did not start: {Path(log_path).read_text()[-2000:]}")
                time.sleep(0.5)
            yield url, process
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.read() == b"ok"
    except OSError:
        return False
