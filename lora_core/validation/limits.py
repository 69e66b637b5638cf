"""The validator's limits, detached from the settings object so tests and callers can pass their own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lora_core.settings import Settings

MIB = 1024 * 1024


@dataclass(frozen=True)
class ValidationLimits:
    """Context length for `over_context_limit`, and the byte limits that keep memory and time bounded."""

    context_limit: int = 2048
    line_limit_bytes: int = 16 * MIB
    decompressed_limit_bytes: int = 4 * 500 * MIB
    max_upload_bytes: int = 500 * MIB

    @classmethod
    def from_settings(cls, settings: Settings) -> ValidationLimits:
        return cls(
            context_limit=settings.context_limit,
            line_limit_bytes=settings.line_limit_bytes,
            decompressed_limit_bytes=settings.effective_decompressed_limit_bytes,
            max_upload_bytes=settings.max_upload_bytes,
        )
