"""The streaming dataset validator: bytes → lines → records → rules → report (FORMAT.md is the contract).

Public API::

    validate_stream(chunks, fmt, limits) -> ValidationReport   # any iterable of bytes chunks, one pass
    validate_file(path, fmt, limits) -> ValidationReport       # size check, then one pass; OSError if unreadable
    file_too_large_report(size, fmt, limits) -> ValidationReport
"""

from lora_core.validation.limits import ValidationLimits
from lora_core.validation.report import DatasetStats, Distribution, Issue, ValidationReport
from lora_core.validation.tokens import count_words, estimate_tokens
from lora_core.validation.validator import (
    DEFAULT_FORMAT,
    FORMAT_SHAPES,
    file_too_large_report,
    validate_file,
    validate_stream,
)

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
    "validate_file",
    "validate_stream",
]
