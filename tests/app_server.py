"""Start the real app (`streamlit run app.py`, the command a deployment runs) on a free port for a test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_app(data_dir: Path, **env: str) -> Iterator[str]:
    """The app on SQLite and local storage under `data_dir`, with `env` on top; yields http://127.0.0.1:<port>.

    The lifespan (migrations, the sweep) and the API routes run as in production. The server is stopped, and its
    log shown in the error, if it exits or does not answer within a minute.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    environment = {
        **os.environ,
        "LORA_DATA_DIR": str(data_dir),
        "LORA_DATABASE_URL": f"sqlite:///{data_dir / 'lora.db'}",
        "LORA_PUBLIC_BASE_URL": url,
        **env,
    }
    environment.pop("FORWARDED_ALLOW_IPS", None)  # uvicorn's default, as a deployment has it
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    # Others may edit the tree meanwhile: no file watcher, so no "File change" banner in screenshots.
    command += ["--server.headless", "true", "--server.fileWatcherType", "none"]
    log = data_dir / f"server-{port}.log"
    with log.open("wb") as log_file:
        server = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            _wait_until_serving(f"{url}/_stcore/health", server, log)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _wait_until_serving(url: str, server: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the app exited with {server.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"the app did not answer at {url} within {timeout}s:\n{log.read_text()[-4000:]}")
