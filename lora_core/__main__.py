"""Command line: `python -m lora_core validate PATH [--format F] [--context-limit N] [--json]`, and
`python -m lora_core worker [--once]` (the validation sweep without the web app).

Each subcommand is a `_cmd_<name>(args) -> int` function registered in `build_parser`; `main` returns the exit code.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lora_core.settings import DATASET_FORMATS, DEFAULT_FORMAT, get_settings

if TYPE_CHECKING:
    from lora_core.validation import ValidationLimits
    from lora_core.validation.excerpts import Excerpt

# What the summary reads of the file at a time when it looks up the text of an issue's line again.
READ_BYTES = 1024 * 1024

EXIT_VALID = 0
EXIT_NOT_VALID = 1
EXIT_UNREADABLE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lora_core", description="LoRA Dataset Manager tools.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = subparsers.add_parser(
        "validate",
        help="check a dataset file and print its report",
        description="Check a JSON Lines dataset (optionally gzip-compressed) against FORMAT.md. "
        "Exit 0 when it is ready, 1 when it has errors, 2 when the file cannot be read.",
    )
    validate.add_argument("path", help="the dataset file (.jsonl or .jsonl.gz)")
    validate.add_argument("--format", choices=DATASET_FORMATS, default=DEFAULT_FORMAT, help="dataset format")
    validate.add_argument(
        "--context-limit",
        type=_positive_int,
        default=None,
        help="trainer's max sequence length in tokens (default: settings)",
    )
    validate.add_argument("--json", action="store_true", help="print the report as JSON")
    validate.set_defaults(handler=_cmd_validate)

    worker = subparsers.add_parser(
        "worker",
        help="run the validation sweep without the web app",
        description="Validate queued datasets from the configured database and storage (LORA_* settings). "
        "Any number of workers may share one database: each dataset is validated once.",
    )
    worker.add_argument("--once", action="store_true", help="validate what is queued now, then exit")
    worker.set_defaults(handler=_cmd_worker)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of tokens")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # A report quotes the file's text (messages, excerpts); a terminal or a redirect in a legacy code page (cp1252 on
    # Windows) cannot encode all of it: escape what it cannot, rather than fail with exit code 1 ("not valid").
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="backslashreplace")
    return args.handler(args)


def _cmd_validate(args: argparse.Namespace) -> int:
    from lora_core.validation import ValidationLimits, validate_file

    limits = ValidationLimits.from_settings(get_settings())
    if args.context_limit is not None:
        limits = dataclasses.replace(limits, context_limit=args.context_limit)
    try:
        report = validate_file(args.path, args.format, limits)
    except OSError as exc:
        why = f"cannot read {args.path}: {exc.strerror or exc}"
        if args.json:
            print(json.dumps({"valid": False, "error": why}))
        else:
            print(f"Error: {why}", file=sys.stderr)
        return EXIT_UNREADABLE
    data = report.to_dict()
    if args.json:
        _print_out(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        _print_out(_summary(args.path, data, _excerpts(args.path, data, limits)))
    return EXIT_VALID if report.valid else EXIT_NOT_VALID


def _print_out(text: str) -> None:
    """Print to standard output, which a reader such as `head` may close first: then the rest is not wanted, and
    the verdict still decides the exit code (Python would print a BrokenPipeError traceback, also at exit)."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush finds somewhere to write


def _excerpts(path: str, report: dict[str, Any], limits: ValidationLimits) -> dict[tuple[int, str, int], Excerpt]:
    """The text around the columns and bytes the report's issues name, read from the file again; none when it can
    no longer be read (the report stands without them)."""
    from lora_core.validation.excerpts import excerpt_positions, read_excerpts

    wanted = excerpt_positions(report)
    if not wanted:
        return {}
    try:
        with open(path, "rb") as handle:
            return read_excerpts(iter(functools.partial(handle.read, READ_BYTES), b""), wanted, limits)
    except OSError:
        return {}


def _summary(path: str, report: dict[str, Any], excerpts: Mapping[tuple[int, str, int], Excerpt] | None = None) -> str:
    """A readable report: verdict, statistics, then errors and warnings with line, field and suggestion, and the
    text around a column or byte the issue names (`excerpts`, keyed by line, "column" or "offset", position)."""
    stats = report["stats"]
    verdict = "READY" if report["valid"] else "NOT READY"
    lines = [
        f"{path}: {verdict} ({report['format']}, shape {report['shape'] or 'unknown'})",
        f"  {report['error_count']:,} error(s), {report['warning_count']:,} warning(s)",
        "",
        "Statistics",
        f"  examples               {stats['total_examples']:,}",
        f"  conversations          {stats['total_conversations']:,}",
        f"  training pairs         {stats['total_training_pairs']:,}",
        f"  turns                  {stats['total_turns']:,} (avg {_opt(stats['avg_turns_per_conversation'])} per "
        "conversation)",
        f"  tokens                 {stats['total_tokens']:,} (targets {stats['total_target_tokens']:,}; avg "
        f"{_opt(stats['avg_tokens_per_pair'])} per pair)",
        f"  over context limit     {stats['over_context_limit']:,} example(s) over {stats['context_limit']:,} tokens",
    ]
    for name in ("tokens_per_example", "turns_per_conversation"):
        dist = stats[name]
        lines.append(
            f"  {name.replace('_', ' '):<22} min {_opt(dist['min'])}, p50 {_opt(dist['p50'])}, "
            f"p90 {_opt(dist['p90'])}, p99 {_opt(dist['p99'])}, max {_opt(dist['max'])}"
        )
    roles = stats["messages_per_role"]
    lines.append(
        f"  messages per role      system {roles['system']:,}, user {roles['user']:,}, assistant {roles['assistant']:,}"
    )
    for title, kind in (("Errors", "errors"), ("Warnings", "warnings")):
        issues = report[kind]
        if not issues:
            continue
        counts = ", ".join(f"{code} {n:,}" for code, n in sorted(report[f"{kind[:-1]}_counts"].items()))
        lines += ["", f"{title} ({counts})"]
        for issue in issues:
            where = "file" if issue["line"] is None else f"line {issue['line']}"
            if issue.get("column") is not None:
                where += f", column {issue['column']}"
            if issue.get("offset") is not None:
                where += f", byte {issue['offset']}"
            field = f" [{issue['field']}]" if issue["field"] else ""
            lines.append(f"  {where}: {issue['code']}{field}: {issue['message']}")
            for marks in ("column", "offset"):
                excerpt = (excerpts or {}).get((issue["line"], marks, issue.get(marks)))
                if excerpt is not None:
                    lines.append(f"      near: {excerpt.text}")
                    lines.append(" " * (len("      near: ") + excerpt.caret) + "^")
            lines.append(f"      fix: {issue['suggestion']}")
        shown = len(issues)
        total = report[f"{kind[:-1]}_count"]
        if shown < total:
            lines.append(f"  … and {total - shown:,} more (the first 100 line issues are listed)")
    return "\n".join(lines)


def _opt(value: object) -> str:
    return "-" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def _cmd_worker(args: argparse.Namespace) -> int:
    import logging

    from lora_core.sweep import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    done = run_worker(get_settings(), once=args.once)
    print(f"validated {done} dataset{'s' if done != 1 else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
