"""Issues and the validation report: the one result the CLI, the database and the API all share (FORMAT.md "Report")."""

from __future__ import annotations

from collections import Counter
from typing import Any

from pydantic import BaseModel, Field

from lora_core.validation.codes import KEPT_LINE_ISSUES, WARNING_CODES

__all__ = ["KEPT_LINE_ISSUES", "WARNING_CODES"]


class Issue(BaseModel):
    """One problem, as data: a code a program can match, where it is, what is wrong and how to fix it.

    `line` is the 1-based physical line in the decompressed text, or None for file-level codes. `column` (1-based
    character, `invalid_json`/`invalid_unicode`) and `offset` (0-based byte, `invalid_utf8`) are None where they do
    not apply, and `ValidationReport.to_dict` then leaves the key out.
    """

    line: int | None
    code: str
    field: str | None = None
    message: str
    suggestion: str
    column: int | None = None
    offset: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump()
        if data["column"] is None:
            del data["column"]
        if data["offset"] is None:
            del data["offset"]
        return data


class Distribution(BaseModel):
    """Nearest-rank percentiles and power-of-two histogram of non-negative integers.

    With no values, `min`..`max` are None and `histogram` is [] (there is nothing to describe, and 0 would be a lie).
    """

    min: int | None = None
    p50: int | None = None
    p90: int | None = None
    p99: int | None = None
    max: int | None = None
    histogram: list[dict[str, int | None]] = Field(default_factory=list)


class MessagesPerRole(BaseModel):
    system: int = 0
    user: int = 0
    assistant: int = 0


class DatasetStats(BaseModel):
    """FORMAT.md "Statistics", plus `over_context_limit` (examples over the limit) and the `context_limit` used."""

    total_examples: int = 0
    total_conversations: int = 0
    total_training_pairs: int = 0
    total_turns: int = 0
    total_tokens: int = 0
    total_target_tokens: int = 0
    avg_turns_per_conversation: float | None = None
    avg_tokens_per_pair: float | None = None
    tokens_per_example: Distribution = Field(default_factory=Distribution)
    turns_per_conversation: Distribution = Field(default_factory=Distribution)
    messages_per_role: MessagesPerRole = Field(default_factory=MessagesPerRole)
    over_context_limit: int = 0
    context_limit: int = 2048


class ValidationReport(BaseModel):
    """The validator's verdict. `valid` is True exactly when there are no errors; warnings never block."""

    valid: bool
    format: str
    shape: str | None
    stats: DatasetStats
    error_count: int
    warning_count: int
    error_counts: dict[str, int]
    warning_counts: dict[str, int]
    errors: list[Issue]
    warnings: list[Issue]
    samples: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready FORMAT.md report; issues leave out `column`/`offset` where they do not apply."""
        data = self.model_dump(exclude={"errors", "warnings"})
        data["errors"] = [issue.to_dict() for issue in self.errors]
        data["warnings"] = [issue.to_dict() for issue in self.warnings]
        return data


class PendingIssues:
    """Issues held back to be added later, in the order they came: the reader's, which the validator adds once
    the lines read before them are merged."""

    def __init__(self) -> None:
        self.pending: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def add(self, *args: Any, **kwargs: Any) -> None:
        self.pending.append((args, kwargs))

    def move_to(self, issues: IssueCollector) -> None:
        for args, kwargs in self.pending:
            issues.add(*args, **kwargs)
        self.pending.clear()


class IssueCollector:
    """Counts every issue but keeps in memory only file-level issues and the first line issues of each kind.

    Issues must be added in line order (the validator merges its blocks of lines in order), so the kept line issues
    are the first ones; file-level issues (line None) are listed first and never cut.
    """

    def __init__(self, keep: int = KEPT_LINE_ISSUES) -> None:
        self.keep = keep
        self.error_counts: Counter[str] = Counter()
        self.warning_counts: Counter[str] = Counter()
        self._file_errors: list[Issue] = []
        self._file_warnings: list[Issue] = []
        self._line_errors: list[Issue] = []
        self._line_warnings: list[Issue] = []

    def add(
        self,
        code: str,
        line: int | None,
        field: str | None,
        message: str,
        suggestion: str,
        *,
        column: int | None = None,
        offset: int | None = None,
    ) -> None:
        if code in WARNING_CODES:
            self.warning_counts[code] += 1
            kept = self._file_warnings if line is None else self._line_warnings
        else:
            self.error_counts[code] += 1
            kept = self._file_errors if line is None else self._line_errors
        if line is None or len(kept) < self.keep:
            kept.append(
                Issue(
                    line=line,
                    code=code,
                    field=field,
                    message=message,
                    suggestion=suggestion,
                    column=column,
                    offset=offset,
                )
            )

    def room(self) -> tuple[int, int]:
        """How many more line issues can be listed: (errors, warnings). Issues of a later block beyond these are
        only counted, so a block need not send them."""
        return self.keep - len(self._line_errors), self.keep - len(self._line_warnings)

    def count_only(self, code: str, number: int) -> None:
        """Count `number` line issues of `code` that are not listed (they come after the first `keep`)."""
        (self.warning_counts if code in WARNING_CODES else self.error_counts)[code] += number

    @property
    def error_count(self) -> int:
        return sum(self.error_counts.values())

    @property
    def warning_count(self) -> int:
        return sum(self.warning_counts.values())

    def build_report(
        self, fmt: str, shape: str | None, stats: DatasetStats, samples: list[dict[str, Any]]
    ) -> ValidationReport:
        return ValidationReport(
            valid=self.error_count == 0,
            format=fmt,
            shape=shape,
            stats=stats,
            error_count=self.error_count,
            warning_count=self.warning_count,
            error_counts=dict(self.error_counts),
            warning_counts=dict(self.warning_counts),
            errors=self._file_errors + self._line_errors,
            warnings=self._file_warnings + self._line_warnings,
            samples=samples,
        )
