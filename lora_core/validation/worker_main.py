"""Imported first by the workers' forkserver: the caller's main script, loaded there once, so no worker runs it.

multiprocessing runs the caller's main script again in every process it starts (as `__mp_main__`, so that what the
script defines can be unpickled there) unless the process already holds it. The forkserver is meant to load it once
for all its workers when "__main__" is preloaded, but on Python 3.11 (which we run) it never receives the script's
path (CPython gh-126631, fixed in later releases): every worker of every validation ran the script again. Under
`streamlit run` that script imports Streamlit, ~0.2 s of CPU in each worker while the validation waits for it.
parallel.py passes the path in the environment (`MAIN_PATH_VARIABLE`) before the forkserver starts, and this module
loads it as the fixed forkserver does; each worker then finds it loaded and runs nothing. Only the forkserver imports
this module.
"""

from __future__ import annotations

import os
import sys
from multiprocessing import process, spawn

from lora_core.validation.parallel import MAIN_PATH_VARIABLE


def load_caller_main() -> None:
    """Load the script named by `MAIN_PATH_VARIABLE` as `__mp_main__`, where no main script is loaded yet."""
    path = os.environ.get(MAIN_PATH_VARIABLE)
    if not path or getattr(sys.modules["__main__"], "__file__", None) is not None:
        return  # no script to load, or one is loaded already (a forkserver that preloads "__main__" itself)
    current = process.current_process()
    current._inheriting = True  # type: ignore[attr-defined]  # as the forkserver marks it: the script must not start processes
    try:
        spawn.import_main_path(path)
    except (Exception, SystemExit):
        pass  # each worker runs the script then, as without this module, and meets the failure where it is reported
    finally:
        del current._inheriting  # type: ignore[attr-defined]


load_caller_main()
