"""The one process: Streamlit pages (ui.py), the JSON API and the local storage endpoints, and the sweep.

`streamlit run app.py` finds `app` by parsing this file. The UI script is a separate file (ui.py) as Streamlit's
own notes advise; this file only wires the parts together.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import streamlit as st

from lora_core.api import api_routes
from lora_core.runtime import get_runtime
from lora_core.sweep import start_sweep, stop_sweep

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
# APScheduler logs every run of the sweep at INFO (several lines a second at short intervals); ours says what matters.
logging.getLogger("apscheduler").setLevel(logging.WARNING)


@asynccontextmanager
async def lifespan(_app: Any) -> AsyncIterator[dict[str, Any]]:
    """Migrate the database, then run the validation sweep for as long as the server runs."""
    runtime = get_runtime()
    start_sweep(runtime.engine, runtime.store, runtime.settings)
    try:
        yield {"runtime": runtime}
    finally:
        stop_sweep(wait=True)


app = st.App("ui.py", routes=api_routes(get_runtime), lifespan=lifespan)
