"""The streaming dataset validator: bytes → lines → records → rules → report (FORMAT.md is the contract).

Public API::

    validate_stream(chunks, fmt, limits) -> ValidationReport   # any iterable of bytes chunks, one pass
    validate_file(path, fmt, limits) -> ValidationReport       # size check, then one pass; OSError if unreadable
    validate_download(chunks, size, spool_dir, fmt, limits)     # a stored object's download (S3), spooled
    file_too_large_report(size, fmt, limits) -> ValidationReport

The names are imported on first use (PEP 562): a worker process imports only what checks lines (blocks.py and
below), not the report's pydantic models, and starts ~0.15 s sooner.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lora_core.validation.limits import ValidationLimits
    from lora_core.validation.report import DatasetStats, Distribution, Issue, ValidationReport
    from lora_core.validation.tokens import count_words, estimate_tokens
    from lora_core.validation.validator import (
        DEFAULT_FORMAT,
        FORMAT_SHAPES,
        file_too_large_report,
        validate_download,
        validate_file,
        validate_stream,
    )

_HOMES = {
    "ValidationLimits": "limits",
    "DatasetStats": "report",
    "Distribution": "report",
    "Issue": "report",
    "ValidationReport": "report",
    "count_words": "tokens",
    "estimate_tokens": "tokens",
    "DEFAULT_FORMAT": "validator",
    "FORMAT_SHAPES": "validator",
    "file_too_large_report": "validator",
    "validate_file": "validator",
    "validate_download": "validator",
    "validate_stream": "validator",
}

__all__ = [
    "DEFAULT_FORMAT",
    "FORMAT_SHAPES",
    "DatasetStats",
    "Distribution",
    "Issue",
    "ValidationLimits",
    "ValidationReport",
    "count_words",
    "estimate_tokens",
    "file_too_large_report",
    "validate_download",
    "validate_file",
    "validate_stream",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
