"""Property-based requests generated from our own OpenAPI document (schemathesis): no 5xx, and every answer —
status, content type, headers, body — is what the document says. Kept small: a few seconds per operation.

The app runs in OIDC mode with a live personal token, so the authenticated routes do real work and schemathesis'
`ignored_auth` check also proves that leaving the token out is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks
from sqlmodel import Session
from starlette.applications import Starlette

from lora_core.api import OPERATIONS, api_routes
from lora_core.runtime import build_runtime
from lora_core.settings import Settings
from lora_core.tokens import create_api_token

TOKEN: dict[str, str] = {}


@pytest.fixture
def api_schema(tmp_path: Path) -> Iterator[schemathesis.BaseSchema]:
    runtime = build_runtime(
        Settings(
            _env_file=None,
            data_dir=tmp_path / "data",
            database_url=f"sqlite:///{tmp_path / 'lora.db'}",
            secret_key="fuzz-secret",
            auth_mode="oidc",
        )
    )
    with Session(runtime.engine, expire_on_commit=False) as session:
        TOKEN["Authorization"] = f"Bearer {create_api_token(session, 'fuzzer', 'fuzz').token}"
    yield schemathesis.openapi.from_asgi("/api/openapi.json", Starlette(routes=api_routes(lambda: runtime)))
    runtime.engine.dispose()


CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.ignored_auth,
]


# schemathesis' own pytest plugin does not run under pytest 9 yet, so each operation is driven with hypothesis.
@pytest.mark.parametrize(("method", "path"), [(o.method, o.path) for o in OPERATIONS])
def test_no_server_errors_and_answers_match_the_document(
    api_schema: schemathesis.BaseSchema, method: str, path: str
) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def requests_match_the_document(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=TOKEN, checks=CHECKS)

    requests_match_the_document()


# Operations that take any input at all (health and the document itself have nothing to get wrong).
WITH_INPUT = [(o.method, o.path) for o in OPERATIONS if o.authenticated or o.body or o.query or o.extra]


@pytest.mark.parametrize(("method", "path"), WITH_INPUT)
def test_requests_that_break_the_document_are_refused_with_4xx(
    api_schema: schemathesis.BaseSchema, method: str, path: str
) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def bad_requests_are_refused(case: schemathesis.Case) -> None:
        # A case whose mutation left the Authorization header out must go without it: adding the token back would
        # undo that mutation, and a request left with nothing else wrong is rightly accepted (a flaky ST201).
        keeps_auth = any(name.lower() == "authorization" for name in case.headers or {})
        case.call_and_validate(
            headers=TOKEN if keeps_auth else None,
            checks=[checks.not_a_server_error, checks.status_code_conformance, checks.negative_data_rejection],
        )

    bad_requests_are_refused()
