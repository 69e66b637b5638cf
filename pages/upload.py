"""Upload: name, description, format and the file, which goes from the browser straight to storage.

See `lora_ui.upload_component` for the round trip; `lora_ui.upload_flow` holds the steps.
"""

from __future__ import annotations

import streamlit as st

from lora_core import service
from lora_core.errors import ServiceError
from lora_core.settings import DATASET_FORMATS, DEFAULT_FORMAT
from lora_ui import upload_flow
from lora_ui.components import DETAIL_PAGE, escape_markdown, format_size, format_when
from lora_ui.identity import current_user_id, runtime
from lora_ui.navigation import require_navigation
from lora_ui.upload_component import dataset_uploader

JOB_KEY = upload_flow.JOB_KEY  # while the browser is sending the file (ui.py settles one left running)
PROBLEMS_KEY = "upload_problems"
REJECTED_KEY = "upload_rejected_dataset"
RESTORE_KEY = "upload_form_restore"  # the form's values, put back after a failed upload
FORM_KEYS = ("upload_name", "upload_description", "upload_format")
FILE_KEY = "upload_file"
FORMAT_HELP = {
    "brightrun_lora_v4": (
        "BrightRun LoRA v4 — the exporter's training pairs (system prompt, history, user input, target response), "
        "or one conversation per line; also checks v4's conversation metadata."
    ),
    "brightrun_lora_v3": "BrightRun LoRA v3 — the same line shapes as v4, without v4's scaffolding metadata checks.",
    "openai_chat": 'OpenAI chat fine-tuning — one {"messages": [{"role", "content"}, …]} object per line.',
}
FORMAT_LABELS = {
    "brightrun_lora_v4": "BrightRun LoRA v4 (default)",
    "brightrun_lora_v3": "BrightRun LoRA v3",
    "openai_chat": "OpenAI chat",
}


def _chosen_file() -> dict | None:
    state = st.session_state.get(FILE_KEY) or {}
    return state.get("file") if hasattr(state, "get") else None


def _start_upload(user_id: str) -> None:
    """The Upload button's callback: runs before the page, so the component gets its job in this same run."""
    st.session_state.pop(PROBLEMS_KEY, None)
    st.session_state.pop(REJECTED_KEY, None)
    rt = runtime()
    name = st.session_state.get("upload_name", "")
    chosen = _chosen_file()
    description = st.session_state.get("upload_description", "")
    problems = upload_flow.form_problems(name, chosen, rt.settings.max_upload_bytes, description)
    if problems:
        st.session_state[PROBLEMS_KEY] = problems
        return
    assert chosen is not None
    try:
        dataset_id, job = upload_flow.start(
            rt,
            user_id,
            name=name,
            description=description,
            fmt=st.session_state.get("upload_format", DEFAULT_FORMAT),
            chosen_file=chosen,
        )
    except ServiceError as error:
        st.session_state[PROBLEMS_KEY] = [error.message] + [
            f"{p.field}: {p.message}" for p in error.details if p.message not in error.message
        ]
        return
    st.session_state[JOB_KEY] = {"dataset_id": str(dataset_id), "name": name.strip(), "job": job}
    st.session_state[RESTORE_KEY] = {key: st.session_state.get(key) for key in FORM_KEYS}


def _same_name_note(user_id: str, name: str) -> None:
    """Say so when the user already has a dataset of this name: allowed, but the two are hard to tell apart later."""
    with runtime().session() as session:
        same = service.datasets_named(session, user_id, name, limit=100)
    rejected = st.session_state.get(REJECTED_KEY)  # just made by this form, and shown with its reason already
    same = [dataset for dataset in same if str(dataset.id) != rejected]
    if not same:
        return
    newest = same[0]
    name_md = escape_markdown(newest.name)
    if len(same) == 1:
        already = f"a dataset named “{name_md}” (created {format_when(newest.created_at)})"
    else:
        already = f"{len(same)} datasets named “{name_md}” (the newest created {format_when(newest.created_at)})"
    st.warning(
        f"You already have {already}. Uploading creates another one; a name with a date or a version tells them apart.",
        icon=":material/content_copy:",
    )
    st.page_link(
        DETAIL_PAGE,
        label="Open the newest of them" if len(same) > 1 else "Open the existing dataset",
        query_params={"id": str(newest.id)},
    )


require_navigation()
user_id = current_user_id()
settings = runtime().settings

# An upload runs only while this page is open: leaving it aborts the PUT, and the next page's run (ui.py) settles
# the job. Coming back starts afresh.
if st.session_state.get("previous_page") != st.session_state.get("current_page"):
    for stale in (PROBLEMS_KEY, REJECTED_KEY, RESTORE_KEY):
        st.session_state.pop(stale, None)

pending = st.session_state.get(JOB_KEY)
busy = pending is not None
# Disabled widgets may come back empty from the browser after the upload; a failed one keeps what was typed.
if not busy and (restore := st.session_state.pop(RESTORE_KEY, None)):
    for form_key, form_value in restore.items():
        if form_value is not None:
            st.session_state[form_key] = form_value

st.title("Upload a dataset")
st.caption(
    f"A JSON Lines file of up to {format_size(settings.max_upload_bytes)}. It is sent straight to storage, then "
    "every line is checked; you can follow the validation on the dataset's page."
)

with st.container(border=True):
    # No max_chars: Streamlit drops a paste that would pass it, leaving the field empty without a word. The length
    # is checked instead (upload_flow.too_long), and said under the field.
    name = st.text_input("Name", key="upload_name", placeholder="e.g. Support chats, March", disabled=busy)
    if problem := upload_flow.too_long("name", name, service.NAME_MAX_CHARS):
        st.error(escape_markdown(problem), icon=":material/error:")
    elif not busy:
        _same_name_note(user_id, name or "")
    description = st.text_area(
        "Description (optional)",
        key="upload_description",
        height=90,
        placeholder="What is in it, where it came from",
        disabled=busy,
    )
    if problem := upload_flow.too_long("description", description, service.DESCRIPTION_MAX_CHARS):
        st.error(escape_markdown(problem), icon=":material/error:")
    fmt = st.selectbox(
        "Format",
        DATASET_FORMATS,
        index=DATASET_FORMATS.index(DEFAULT_FORMAT),
        format_func=FORMAT_LABELS.get,
        key="upload_format",
        disabled=busy,
        help="\n\n".join(FORMAT_HELP[f] for f in DATASET_FORMATS),
    )
    st.caption(FORMAT_HELP[fmt].replace("{", "\\{").replace("[", "\\["))
    st.markdown("**File**")
    picker = dataset_uploader(
        key=FILE_KEY,
        max_bytes=settings.max_upload_bytes,
        job=pending["job"] if pending else None,
        disabled=busy,
    )

    result = picker.get("result")
    if pending and isinstance(result, dict) and result.get("job") == pending["job"]["id"]:
        st.session_state.pop(JOB_KEY, None)
        outcome = upload_flow.settle(runtime(), user_id, pending["dataset_id"], result)
        if outcome.error is None and outcome.dataset_id is not None:
            st.switch_page(DETAIL_PAGE, query_params={"id": str(outcome.dataset_id)})
        st.session_state[PROBLEMS_KEY] = [outcome.error or "The upload did not finish."]
        st.session_state[REJECTED_KEY] = str(outcome.dataset_id) if outcome.dataset_id else None
        st.rerun()  # redraw the form enabled, with the reason

    for problem in st.session_state.get(PROBLEMS_KEY) or []:
        st.error(escape_markdown(problem), icon=":material/error:")
    rejected_id = st.session_state.get(REJECTED_KEY)
    if rejected_id and st.session_state.get(PROBLEMS_KEY):
        st.page_link(
            DETAIL_PAGE,
            label="Open the rejected dataset",
            icon=":material/open_in_new:",
            query_params={"id": rejected_id},
        )

    unusable = upload_flow.file_problem(_chosen_file(), settings.max_upload_bytes)
    st.button(
        "Uploading…" if busy else "Upload",
        type="primary",
        icon=":material/upload:",
        key="upload_start",
        disabled=busy or unusable is not None,
        help=escape_markdown(unusable) if unusable else None,
        on_click=_start_upload,
        args=(user_id,),
    )
