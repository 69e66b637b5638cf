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
import uvicorn.config
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from lora_core.api import api_routes
from lora_core.runtime import get_runtime
from lora_core.settings import public_url_mismatch
from lora_core.sweep import start_sweep, stop_sweep

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
# APScheduler logs every run of the sweep at INFO, and a run skipped while a long validation holds the job at
# WARNING (expected: max_instances=1); the sweep logs what matters itself.
logging.getLogger("apscheduler").setLevel(logging.ERROR)


def _proxy_headers_ignored(app: Any, trusted_hosts: Any = None) -> ProxyHeadersMiddleware:
    """uvicorn's proxy-headers middleware, trusting no peer: the client address stays the TCP peer's."""
    return ProxyHeadersMiddleware(app, trusted_hosts=[])


# uvicorn (which `streamlit run` uses for an st.App) replaces the client address with the X-Forwarded-For one when
# the peer is in FORWARDED_ALLOW_IPS (default 127.0.0.1 and ::1). Our proxy mode decides itself whom to trust
# (LORA_TRUSTED_PROXIES, checked against the direct peer, for the API and the pages alike), so a local proxy's
# X-Forwarded-For would make its requests look like the end user's and never sign anyone in. Setting
# FORWARDED_ALLOW_IPS here is too late: Streamlit builds uvicorn's Config, which reads it, before it imports this
# file. uvicorn wraps the app in that middleware just after importing it (Config.load), so replacing the name
# uvicorn.config looks it up by takes effect; tests/test_security.py proves it against a running server.
uvicorn.config.ProxyHeadersMiddleware = _proxy_headers_ignored  # type: ignore[assignment,misc]


@asynccontextmanager
async def lifespan(_app: Any) -> AsyncIterator[dict[str, Any]]:
    """Migrate the database, then run the validation sweep for as long as the server runs (unless workers apart
    from the pages run it: LORA_SWEEP_IN_APP=false)."""
    runtime = get_runtime()
    if warning := public_url_mismatch(runtime.settings.public_base_url, int(st.get_option("server.port"))):
        logging.getLogger("lora_core.app").warning(warning)
    if runtime.settings.sweep_in_app:
        start_sweep(runtime.engine, runtime.store, runtime.settings)
    else:
        logging.getLogger("lora_core.app").info("no sweep in this process (LORA_SWEEP_IN_APP=false): workers run it")
    try:
        yield {"runtime": runtime}
    finally:
        stop_sweep(wait=True)


app = st.App("ui.py", routes=api_routes(get_runtime), lifespan=lifespan)
