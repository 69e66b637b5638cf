"""Keep Streamlit in `st.navigation` mode even when a page's URL is the first thing a fresh process serves.

Streamlit sees a `pages/` folder beside the UI script and, until some run calls `st.navigation`, runs the
requested file from `pages/` directly (its old multipage mode): ui.py never runs, so there is no navigation,
sidebar or page config, and hidden pages show up in a generated menu. Every page (and ui.py) calls
`require_navigation()` first: in that mode it switches the process to navigation mode and reruns, which runs
ui.py for the same URL (page hashes come from the URL path, the same in both modes).
"""

from __future__ import annotations

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager


def require_navigation() -> None:
    """Rerun through ui.py if Streamlit is running this script without it (a no-op once navigation ran)."""
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()
