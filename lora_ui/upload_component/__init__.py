"""A file picker that uploads straight from the browser to the dataset's upload URL (st.components.v2).

Why not `st.file_uploader`: it keeps the whole file in the Streamlit session's memory; a 500 MB dataset must go
from the browser to storage (a presigned S3 PUT, or the app's local `PUT /api/storage/upload?token=…`) directly.

The round trip, one Streamlit run per step:
1. The user picks a file; the component reports `{name, size, type}` as its `file` state (the File stays in JS).
2. Python validates the form and calls `service.create_dataset`, which returns the upload URL and headers; it
   passes them to the component as `data["job"]`.
3. The component PUTs the File with XMLHttpRequest (progress bar from `upload.onprogress`) and reports the end
   as the `result` trigger `{job, ok, status, error, cancelled}`; Python then confirms the upload.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypedDict

import streamlit as st
from streamlit.components.v2.bidi_component import ComponentResult

_ASSETS = Path(__file__).resolve().parent
COMPONENT_NAME = "lora_dataset_uploader"


class ChosenFile(TypedDict):
    name: str
    size: int
    type: str


class UploadJob(TypedDict):
    """What the component needs to send the file: a unique id per attempt, then the storage's UploadTarget."""

    id: str
    url: str
    method: str
    headers: dict[str, str]
    file: dict[str, Any]


# Inline strings (they contain newlines, so Streamlit does not take them for asset paths).
_uploader = st.components.v2.component(
    COMPONENT_NAME,
    html=(_ASSETS / "uploader.html").read_text(encoding="utf-8"),
    css=(_ASSETS / "uploader.css").read_text(encoding="utf-8"),
    js=(_ASSETS / "uploader.js").read_text(encoding="utf-8"),
)


def _ignore() -> None:
    """State and trigger names must have an `on_<name>_change` callback to appear in the result."""


def dataset_uploader(
    *, key: str, max_bytes: int, job: UploadJob | None = None, disabled: bool = False
) -> ComponentResult:
    """Mount the picker; `result.file` is the chosen file (or None), `result.result` the end of an upload."""
    return _uploader(
        key=key,
        data={"max_bytes": max_bytes, "job": job, "disabled": disabled},
        default={"file": None},
        on_file_change=_ignore,
        on_result_change=_ignore,
    )
