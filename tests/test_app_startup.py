"""What the app says at start-up about its configuration."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from lora_core.models import DatasetStatus
from lora_core.runtime import build_runtime
from lora_core.settings import Settings, public_url_mismatch
from lora_core.sweep import run_worker
from tests import app_server
from tests.conftest import EQ12_PATH
from tests.test_sweep import load, queue_dataset


@pytest.mark.parametrize(
    ("url", "port"),
    [
        ("http://127.0.0.1:8501", 8501),
        ("http://localhost:8501/", 8501),
        ("http://127.0.0.1", 80),  # the scheme's port
        ("https://localhost", 443),
        ("https://lora.example.com", 8501),  # behind a proxy the ports differ by design
        ("http://10.0.0.5:9000", 8501),
    ],
)
def test_no_warning_where_the_public_url_reaches_the_server(url: str, port: int) -> None:
    assert public_url_mismatch(url, port) is None


def test_a_local_public_url_on_another_port_is_named_with_the_fix() -> None:
    warning = public_url_mismatch("http://127.0.0.1:8501", 8600)
    assert warning is not None
    assert "port 8600" in warning and "LORA_PUBLIC_BASE_URL=http://127.0.0.1:8600" in warning
    ipv6 = public_url_mismatch("http://[::1]:8501", 8600)
    assert ipv6 is not None and "LORA_PUBLIC_BASE_URL=http://[::1]:8600" in ipv6


@pytest.mark.slow
def test_the_running_app_logs_the_mismatch_at_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with app_server.running_app(data_dir, LORA_PUBLIC_BASE_URL="http://127.0.0.1:1") as url:
        assert httpx.get(f"{url}/api/health", timeout=10).status_code == 200
        port = url.rsplit(":", 1)[1]
    log = next(data_dir.glob("server-*.log")).read_text()
    assert f"LORA_PUBLIC_BASE_URL is http://127.0.0.1:1, but the server listens on port {port}" in log


@pytest.mark.slow
def test_with_sweep_in_app_off_the_app_leaves_validation_to_the_workers(tmp_path: Path) -> None:
    """LORA_SWEEP_IN_APP=false: a deployment whose workers validate apart from the pages (the README's worker)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    env = {"LORA_SWEEP_IN_APP": "false", "LORA_SWEEP_INTERVAL_SECONDS": "0.2"}
    with app_server.running_app(data_dir, **env) as url:
        assert httpx.get(f"{url}/api/health", timeout=10).status_code == 200
        settings = Settings(_env_file=None, data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'lora.db'}")
        runtime = build_runtime(settings)
        content = EQ12_PATH.read_bytes()
        dataset_id = queue_dataset(runtime.engine, runtime.store, settings, content, format="brightrun_lora_v4")
        time.sleep(2)  # ten sweep intervals
        assert load(runtime.engine, dataset_id).status == DatasetStatus.VALIDATING
        assert run_worker(settings, once=True) == 1
        assert load(runtime.engine, dataset_id).status == DatasetStatus.READY
    log = next(data_dir.glob("server-*.log")).read_text()
    assert "no sweep in this process (LORA_SWEEP_IN_APP=false)" in log
