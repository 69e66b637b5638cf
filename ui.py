"""The UI script: navigation between the pages, the current user, and the sidebar's notifications.

`app.py` serves this script (Streamlit's notes: keep it separate from the `st.App` file and outside `pages/`).
Pages not listed here never render, even if they sit in `pages/`.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from lora_ui import upload_flow
from lora_ui.components import escape_markdown
from lora_ui.identity import current_user_id, runtime
from lora_ui.navigation import require_navigation
from lora_ui.notifications import sidebar_notifications

HERE = Path(__file__).resolve().parent

require_navigation()

st.set_page_config(page_title="LoRA Dataset Manager", page_icon=":material/dataset:", layout="wide")

upload_page = st.Page("pages/upload.py", title="Upload", icon=":material/upload:")
pages = [
    st.Page("pages/datasets.py", title="Datasets", icon=":material/dataset:", default=True),
    upload_page,
    st.Page("pages/notifications.py", title="Notifications", icon=":material/notifications:"),
    st.Page(
        "pages/dataset.py", title="Dataset", icon=":material/description:", url_path="dataset", visibility="hidden"
    ),
]
# Tokens are for the API; in local identity mode there is nobody to issue them to.
if runtime().settings.auth_mode != "local" and (HERE / "pages" / "settings.py").exists():
    pages.append(st.Page("pages/settings.py", title="Settings", icon=":material/key:"))

navigation = st.navigation(pages)
# Which page the previous full run showed, so a page can tell "just arrived" from "rerun" (see pages/upload.py).
st.session_state["previous_page"] = st.session_state.get("current_page")
st.session_state["current_page"] = navigation.url_path
user_id = current_user_id()
# The user left the Upload page while the browser was sending a file, which stopped it: settle it now, on the page
# they went to, instead of leaving the dataset "uploading" for hours.
if (left := st.session_state.get(upload_flow.JOB_KEY)) and navigation.url_path != upload_page.url_path:
    st.session_state.pop(upload_flow.JOB_KEY, None)
    told = upload_flow.settle_left_upload(runtime(), user_id, left["dataset_id"], left.get("name") or "your dataset")
    st.toast(escape_markdown(told), icon=":material/upload:")
sidebar_notifications(user_id)
navigation.run()
