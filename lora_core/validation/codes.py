"""Which rule codes are warnings, and how many line issues a report lists: what checking a line needs of the report,
kept apart from its pydantic models so that worker processes start without importing pydantic."""

from __future__ import annotations

# Every code FORMAT.md calls a warning; every other code is an error. Warnings never block a dataset.
WARNING_CODES: frozenset[str] = frozenset(
    {
        "bom",
        "blank_line",
        "few_examples",
        "empty_system_prompt",
        "missing_metadata",
        "missing_scaffolding",
        "low_quality",
        "repeated_user_input",
        "trailing_user_turn",
        "unknown_key",
        "duplicate_example",
        "over_context_limit",
    }
)

# How many line issues of each kind (errors, warnings) the report lists; all of them are counted.
KEPT_LINE_ISSUES = 100
