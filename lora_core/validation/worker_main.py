"""Imported first by the workers' forkserver: a validation worker starts without loading the caller's main script.

multiprocessing loads the caller's main script in every process it starts (runs it again as `__mp_main__`, so that
what it defines can be unpickled there), unless the process has it already. A validation worker unpickles nothing
from it: its functions, sources and limits are all lora_core's. Yet on Python 3.11 (which we run) every worker of
every validation ran it again: the forkserver's own preload of "__main__" never receives the script's path (CPython
gh-126631), and under Streamlit the script is whatever `sys.modules["__main__"]` holds when the pool starts: the
`streamlit` command (an import of Streamlit, ~0.2 s of CPU and ~750 files per worker) or, once a page has run
(Streamlit puts its own module there and leaves it), the page script, executed outside Streamlit in every worker.

So, in the forkserver only, `spawn.prepare` (which a new process runs first) leaves the main script out for the
processes of parallel.py's `ValidationWorker` class, recognised by their name; any other process it forks is
prepared as before. Python 3.11's forkserver ignores the caller's sys.path (gh-117378): it finds this module
because the set-up scripts install lora_core (or, without that, from the project folder as working directory). One
that cannot import it starts workers the old way, and `parallel.start_worker_server` logs a warning.
"""

from __future__ import annotations

from multiprocessing import spawn
from typing import Any

from lora_core.validation.parallel import WORKER_NAME_PREFIX

_MAIN_KEYS = ("init_main_from_path", "init_main_from_name")
_prepare = spawn.prepare


def prepare(data: dict[str, Any]) -> None:
    """`spawn.prepare`, without the main script for a validation worker."""
    if str(data.get("name", "")).startswith(WORKER_NAME_PREFIX):
        data = {key: value for key, value in data.items() if key not in _MAIN_KEYS}
    _prepare(data)


spawn.prepare = prepare
