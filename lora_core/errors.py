"""Errors of the use cases, as data: a code a program can match, a message a person can read, per-field details."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError


@dataclass(frozen=True)
class FieldProblem:
    field: str
    message: str
    code: str = "invalid"

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "code": self.code}


# What pydantic puts before the message of a ValueError or AssertionError raised in a validator.
_PYDANTIC_PREFIXES = {"value_error": "Value error, ", "assertion_error": "Assertion failed, "}


def field_problems(error: ValidationError) -> list[FieldProblem]:
    """Each of pydantic's errors as a FieldProblem, its message in our validator's own words (no "Value error, ").

    A choice out of a list (a format) is told as the service tells it (`choice_problem`), whichever checked it."""
    problems = []
    for e in error.errors(include_url=False):
        where = ".".join(str(part) for part in e["loc"]) or "body"
        if e["type"] == "literal_error":
            expected = str(e.get("ctx", {}).get("expected", "")).replace("'", "").replace(" or ", ", ")
            problems.append(choice_problem(where, expected.split(", ")))
        elif e["type"] == "extra_forbidden":
            problems.append(FieldProblem(where, "is not a field of this request", e["type"]))
        else:
            message = e["msg"].removeprefix(_PYDANTIC_PREFIXES.get(e["type"], ""))
            problems.append(FieldProblem(where, message, e["type"]))
    return problems


def choice_problem(field: str, choices: Sequence[str]) -> FieldProblem:
    return FieldProblem(field, f"must be one of {', '.join(choices)}", "invalid_choice")


@dataclass
class ServiceError(Exception):
    """Base of every error a page or route may show to the user as it is."""

    message: str
    details: list[FieldProblem] = field(default_factory=list)
    code: str = "error"

    def __str__(self) -> str:
        return self.message


@dataclass
class InvalidInput(ServiceError):
    code: str = "invalid_input"


@dataclass
class NotFound(ServiceError):
    """Also for what exists but is someone else's: we never reveal that it exists."""

    code: str = "not_found"


@dataclass
class Conflict(ServiceError):
    """The request is fine but the dataset is in the wrong state for it."""

    code: str = "conflict"


@dataclass
class UploadRejected(ServiceError):
    """Confirming an upload failed its checks; the dataset has been moved to `error` with this message."""

    code: str = "upload_rejected"


@dataclass
class StorageUnavailable(ServiceError):
    code: str = "storage_unavailable"
