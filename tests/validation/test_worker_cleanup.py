"""Worker processes never outlive the process that started them, even when it is killed outright."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Validates a stream whose first 40 MB come at once (enough to start the worker pool) and whose rest never comes.
CALLER = r"""
import sys, time
from lora_core.validation import ValidationLimits, validate_stream
line = b'{"messages": [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "hello"}]}\n'
def chunks():
    block = line * (1024 * 1024 // len(line))
    for _ in range(40):
        yield block
    print("pool running", flush=True)
    time.sleep(3600)
    yield b""
validate_stream(chunks(), "openai_chat", ValidationLimits(workers=2))
"""


def _session_members(session_id: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session_id and fields[0] != "Z":  # field 6 of /proc/pid/stat: the session id
            members.append(int(entry.name))
    return members


def test_workers_exit_when_their_caller_is_killed() -> None:
    caller = subprocess.Popen([sys.executable, "-c", CALLER], cwd=ROOT, stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert caller.stdout is not None and caller.stdout.readline().strip() == b"pool running"
        assert len(_session_members(caller.pid)) >= 3  # the caller, the forkserver and its workers
        os.kill(caller.pid, signal.SIGKILL)
        caller.wait()
        deadline = time.monotonic() + 10
        while _session_members(caller.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _session_members(caller.pid) == []
    finally:
        for pid in _session_members(caller.pid):
            os.kill(pid, signal.SIGKILL)
