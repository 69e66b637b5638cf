"""The validator's limits, detached from the settings object so tests and callers can pass their own."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lora_core.settings import Settings

MIB = 1024 * 1024


def default_workers() -> int:
    """One worker process per usable core, at most 2 (settings' `validation_workers` overrides it).

    Two are what the benchmark machine has; more would only help on more cores, and each costs ~40 MiB.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(2, cores)


@dataclass(frozen=True)
class ValidationLimits:
    """Context length for `over_context_limit`, the byte limits that keep memory and time bounded, and the number of
    worker processes for large inputs (0 or 1: everything in the calling process)."""

    context_limit: int = 2048
    line_limit_bytes: int = 16 * MIB
    decompressed_limit_bytes: int = 4 * 500 * MIB
    max_upload_bytes: int = 500 * MIB
    workers: int = field(default_factory=default_workers)

    @classmethod
    def from_settings(cls, settings: Settings) -> ValidationLimits:
        workers = settings.validation_workers
        return cls(
            context_limit=settings.context_limit,
            line_limit_bytes=settings.line_limit_bytes,
            decompressed_limit_bytes=settings.effective_decompressed_limit_bytes,
            max_upload_bytes=settings.max_upload_bytes,
            workers=default_workers() if workers is None else workers,
        )
