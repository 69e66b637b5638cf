"""The block-by-block and worker-process paths give the very report of a single pass, byte for byte.

Every input is validated four ways and the reports compared as JSON text (key order included): as one block in
this process (the reference: a single pass), in blocks of a few lines in this process, in blocks of a few lines
in worker processes from the first line on, and as a source cut into spans of a few hundred bytes that worker
processes read themselves, numbering their lines from 1. Tiny blocks put every cross-line rule across block boundaries:
duplicates, repeated ids, the shape fixed in one block and broken in another, bare `conversation_id` lines before
and after the shape is known, the `_meta` header, and more than 100 issues.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lora_core.validation import ValidationLimits
from lora_core.validation import parallel as parallel_module
from lora_core.validation.parallel import start_worker_server
from lora_core.validation.validator import run_source_validation, run_validation
from tests.conftest import EQ12_PATH
from tests.validation.test_rule_codes import (
    DELETE,
    OPENAI,
    V3,
    V4,
    BytesSource,
    Line,
    changed,
    chunked,
    conversation,
    header,
    messages,
    pair,
    to_jsonl,
)

ROOT = Path(__file__).resolve().parents[2]
ONE_BLOCK = 1 << 62


def report_json(data: bytes, fmt: str, *, workers: int, block_lines: int, **limit_overrides: int) -> str:
    limits = ValidationLimits(workers=workers, **limit_overrides)
    report, info = run_validation(
        chunked(data, 4096), fmt, limits, block_lines=block_lines, block_bytes=ONE_BLOCK, parallel_from_bytes=-1
    )
    # Workers start with the first block; an input with no lines to check (empty, binary) has none.
    if workers > 1 and report.stats.total_examples:
        assert info.workers == workers and len(info.worker_peak_rss_kib) >= 1
    return json.dumps(report.to_dict())


def spans_report_json(data: bytes, fmt: str, *, span_bytes: int, **limit_overrides: int) -> str:
    """The report of `data` as a source whose spans worker processes read themselves."""
    limits = ValidationLimits(workers=2, **limit_overrides)
    report, info = run_source_validation(
        BytesSource(data), fmt, limits, block_bytes=span_bytes, parallel_from_bytes=-1, read_bytes=64
    )
    if report.stats.total_examples and not data.startswith(b"\x1f\x8b"):
        assert info.workers == 2
    return json.dumps(report.to_dict())


def assert_same_everywhere(data: bytes, fmt: str = V4, *, block_lines: int = 3, **limit_overrides: int) -> dict:
    single = report_json(data, fmt, workers=0, block_lines=ONE_BLOCK, **limit_overrides)
    assert report_json(data, fmt, workers=0, block_lines=block_lines, **limit_overrides) == single
    assert report_json(data, fmt, workers=2, block_lines=block_lines, **limit_overrides) == single
    assert spans_report_json(data, fmt, span_bytes=150 * block_lines, **limit_overrides) == single
    return json.loads(single)


def lines_of(*lines: Line) -> bytes:
    return to_jsonl(list(lines))


def pairs(count: int, start: int = 1) -> list[Line]:
    return [pair(i) for i in range(start, start + count)]


# -- the cases -----------------------------------------------------------------------------------------------------

CASES: dict[str, tuple[bytes, str]] = {
    "clean pairs with a header": (lines_of(header(), *pairs(14)), V4),
    "duplicate examples across blocks": (lines_of(*pairs(5), changed(pair(2), "id", "x-2"), *pairs(4, 6), pair(7)), V4),
    "ids repeated across blocks": (
        lines_of(*pairs(4), changed(pair(9), "id", "pair-1"), *pairs(3, 10), changed(pair(20), "id", "pair-3")),
        V4,
    ),
    "mixed shapes across blocks": (
        lines_of(*pairs(4), conversation(1), *pairs(2, 5), conversation(2), messages(3), pair(8)),
        V4,
    ),
    "shape fixed by a conversation, then pairs": (
        lines_of(conversation(1), *[conversation(i) for i in range(2, 8)], pair(1), conversation(8)),
        V3,
    ),
    "bare conversation_id lines before and after the shape": (
        lines_of(
            {"conversation_id": "c-0"},
            {"conversation_id": "c-1", "note": "x"},
            "",
            {"conversation_id": "c-2"},
            *pairs(5),
            {"conversation_id": "c-3"},
            {"conversation_id": "conv-2"},
            *pairs(3, 6),
        ),
        V4,
    ),
    "bare conversation_id lines, then a late shape": (
        lines_of(*[{"conversation_id": f"c-{i}"} for i in range(8)], *pairs(4), conversation(1)),
        V4,
    ),
    "bare conversation_id lines, openai": (
        lines_of(*[{"conversation_id": f"c-{i}"} for i in range(4)], *[messages(i) for i in range(6)]),
        OPENAI,
    ),
    "misplaced and repeated _meta": (
        lines_of(*pairs(3), header(), {**pair(4), "_meta": {}}, header(), *pairs(3, 5)),
        V4,
    ),
    "header that is not an object, after blank lines": (lines_of("", "  ", {"_meta": []}, *pairs(6)), V4),
    "messages with weights and duplicates": (
        lines_of(
            *[messages(i) for i in range(5)],
            changed(messages(2), "messages[2].weight", 0),
            messages(2),
            changed(messages(2), "messages[2].weight", 0),
            changed(messages(3), "messages[2].weight", True),
        ),
        OPENAI,
    ),
    "conversation ids repeated with different turn counts": (
        lines_of(
            *[conversation(i % 3) for i in range(9)],
            changed(
                conversation(1), "turns", [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]
            ),
        ),
        V4,
    ),
    "wrong format everywhere": (lines_of(*pairs(7)), OPENAI),
    "broken lines of every kind": (
        lines_of(
            b"\xef\xbb\xbf" + json.dumps(pair(1)).encode(),
            b'{"id": "a", "text": "caf\xe9"}',
            '{"id": "b", "x": "\\ud800"}',
            '{"id": NaN}',
            "[1, 2]",
            '"just a string"',
            {"turn_number": 1e400, **changed(pair(2), "turn_number", DELETE)},
            changed(pair(3), "turn_number", 10**20),
            {"unknown": 1},
            "\t \r",
            *pairs(3, 4),
        ),
        V4,
    ),
    "json array after blank lines": (b"\n \n" + json.dumps([pair(1), pair(2)]).encode() + b"\n", V4),
    "crlf line ends and no final newline": (to_jsonl(pairs(8), line_end=b"\r\n", final_newline=False), V4),
    "more than 100 errors and warnings": (
        lines_of(
            *[
                line
                for i in range(160)
                for line in (
                    changed(pair(i), "conversation_metadata", DELETE),
                    "{not json",
                    changed(pair(i % 40), "id", f"pair-{i % 7}"),
                )
            ]
        ),
        V4,
    ),
    "empty file": (b"", V4),
    "header only": (lines_of(header()), V4),
    "few examples": (lines_of(*pairs(3)), V4),
}


@pytest.mark.parametrize("name", list(CASES))
def test_blocks_and_workers_give_the_single_pass_report(name: str) -> None:
    data, fmt = CASES[name]
    assert_same_everywhere(data, fmt)


def test_a_case_has_what_it_is_named_for() -> None:
    """The cases really put cross-line findings across blocks (a guard against a silently empty case list)."""
    mixed = assert_same_everywhere(*CASES["mixed shapes across blocks"])
    assert mixed["error_counts"] == {"mixed_shapes": 2, "wrong_format": 1}
    many = assert_same_everywhere(*CASES["more than 100 errors and warnings"])
    assert many["error_count"] > 100 and len(many["errors"]) == 100
    assert many["warning_count"] > 100 and len(many["warnings"]) == 100
    assert many["error_counts"]["duplicate_id"] > 100


@pytest.mark.parametrize("fmt", [V4, V3, OPENAI])
def test_eq12_sample(fmt: str) -> None:
    report = assert_same_everywhere(EQ12_PATH.read_bytes(), fmt, block_lines=2)
    if fmt == V4:
        assert report["stats"]["total_tokens"] == 58_316


def test_gzip_and_line_limits() -> None:
    data = lines_of(*pairs(6), "x" * 3000, *pairs(3, 7), "", "y" * 5000)
    assert_same_everywhere(gzip.compress(data), V4, line_limit_bytes=2048)


def test_gzip_cut_short_and_over_the_cap() -> None:
    data = lines_of(*pairs(12))
    assert_same_everywhere(gzip.compress(data)[:-30], V4)
    assert_same_everywhere(gzip.compress(data), V4, decompressed_limit_bytes=len(data) // 2)


def test_binary_file() -> None:
    assert_same_everywhere(b"PK\x03\x04" + b"\x00" * 100, V4)


def test_a_generated_file_of_a_few_megabytes(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("validate_bench", ROOT / "bench" / "validate_bench.py")
    assert spec and spec.loader
    bench: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    path = tmp_path / "synthetic.jsonl"
    bench.generate(path, 3)
    data = path.read_bytes()
    # Repeat a stretch of the file so duplicates and repeated ids span workers too.
    data += data[: len(data) // 3].split(b"\n", 1)[1].rsplit(b"\n", 1)[0] + b"\n"
    report = assert_same_everywhere(data, V4, block_lines=97, context_limit=1500)
    assert report["warning_counts"]["duplicate_example"] > 100
    assert report["warning_counts"]["over_context_limit"] > 0


def test_production_defaults_start_workers_only_for_large_inputs() -> None:
    data = lines_of(*pairs(20))
    report, info = run_validation([data], V4, ValidationLimits(workers=2))
    assert info.workers == 0 and report.valid


def test_exceptions_from_the_byte_source_propagate_with_workers_running() -> None:
    class StorageError(Exception):
        pass

    def chunks() -> Any:
        yield lines_of(*pairs(30))
        raise StorageError("connection reset")

    with pytest.raises(StorageError, match="connection reset"):
        run_validation(chunks(), V4, ValidationLimits(workers=2), block_lines=2, parallel_from_bytes=-1)


LINE_KINDS: list[Line] = [
    pair(1),
    pair(2),
    changed(pair(3), "id", "pair-1"),
    changed(pair(4), "target_response", " "),
    conversation(1),
    conversation(2),
    messages(1),
    {"conversation_id": "conv-1"},
    {"conversation_id": "conv-9", "turns": []},
    header(),
    {"x": 1},
    "",
    "{broken",
    changed(pair(5), "system_prompt", ""),
]


@settings(max_examples=60, deadline=None)
@given(
    picks=st.lists(st.integers(0, len(LINE_KINDS) - 1), max_size=40),
    fmt=st.sampled_from([V4, V3, OPENAI]),
    block_lines=st.integers(1, 6),
)
def test_any_mix_of_lines_in_any_blocks_in_process(picks: list[int], fmt: str, block_lines: int) -> None:
    """In-process blocks run the same checks as workers; here hypothesis shuffles lines of every kind."""
    data = to_jsonl([LINE_KINDS[pick] for pick in picks])
    single = report_json(data, fmt, workers=0, block_lines=ONE_BLOCK)
    assert report_json(data, fmt, workers=0, block_lines=block_lines) == single


@settings(max_examples=8, deadline=None)
@given(picks=st.lists(st.integers(0, len(LINE_KINDS) - 1), min_size=5, max_size=40), block_lines=st.integers(1, 4))
def test_any_mix_of_lines_in_worker_processes(picks: list[int], block_lines: int) -> None:
    data = to_jsonl([LINE_KINDS[pick] for pick in picks])
    single = report_json(data, V4, workers=0, block_lines=ONE_BLOCK)
    assert report_json(data, V4, workers=2, block_lines=block_lines) == single
    assert spans_report_json(data, V4, span_bytes=100 * block_lines) == single


def test_a_span_that_fixes_the_shape_and_breaks_it_names_the_right_line() -> None:
    """A worker numbers a span's lines from 1. When the span fixes the file's shape and a later line in it has
    another shape, its `mixed_shapes` message names the line that fixed it: the span is checked again here, with
    the file's line numbers, rather than shifted."""
    first = pair(1)
    prefix = [{"x": "y" * 200}] * (len(to_jsonl([first])) // 200 + 2)  # lines of no shape, a span's worth
    data = to_jsonl([*prefix, first, conversation(1)])
    span_bytes = len(to_jsonl(prefix))
    single = json.loads(report_json(data, V4, workers=0, block_lines=ONE_BLOCK))
    mixed = [issue for issue in single["errors"] if issue["code"] == "mixed_shapes"]
    assert mixed and f"line {len(prefix) + 1} made this a file" in mixed[0]["message"]
    assert spans_report_json(data, V4, span_bytes=span_bytes) == json.dumps(single)


def test_checking_lines_does_not_import_the_report_models() -> None:
    """Worker processes import the line-checking modules only; pydantic would add ~0.15 s to each pool's start."""
    code = (
        "import sys, lora_core.validation.parallel, lora_core.validation.blocks; "
        "import lora_core.validation as v; assert v.__all__ and 'pydantic' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_workers_fork_from_a_server_that_has_imported_the_validator() -> None:
    """start_worker_server (called by the sweep at its start) leaves a forkserver that has imported the line checks:
    a worker has them from its first instruction. (It has no main script of the caller's:
    test_workers_do_not_run_the_callers_main_script; that the line checks need no pydantic is
    test_checking_lines_does_not_import_the_report_models.)"""
    start_worker_server()
    start_worker_server()  # multiprocessing keeps one per process: the second call finds it running
    with ProcessPoolExecutor(max_workers=1, mp_context=parallel_module._context()) as pool:
        modules = pool.submit(eval, "sorted(__import__('sys').modules)").result()
    assert "lora_core.validation.blocks" in modules and "lora_core.validation.parallel" in modules


# A caller's main script that notes each process it runs in (as __main__ here, as __mp_main__ wherever
# multiprocessing loads it for a new process), then validates twice with workers; with `swap`, it first puts another
# script in sys.modules["__main__"], as Streamlit does with its page script while a page runs (and leaves it there).
MAIN_SCRIPT = """
import os, sys, types
sys.path.insert(0, {root!r})
with open({log!r}, "a") as log:
    log.write(f"{{os.getpid()}} {{__name__}} {{os.path.basename(__file__)}}\\n")
from lora_core.validation import ValidationLimits
from lora_core.validation.parallel import BlockPool, start_worker_server
if __name__ == "__main__":
    if {swap!r}:
        page = types.ModuleType("__main__")
        page.__file__ = os.path.join(os.path.dirname(__file__), "page.py")
        sys.modules["__main__"] = page
    start_worker_server()
    for _ in range(2):  # a validation, then the next: each starts its own workers
        with BlockPool(2, "brightrun_lora_v4", ValidationLimits()) as pool:
            result = pool.submit(1, b'{{"messages": []}}\\n', False, 1, (None, 0), (10, 10)).result()
            print(*(future.result()[0] for future in pool._warm_up), result.worker[0])
"""


def _run_caller(
    tmp_path: Path, *, swap: bool, cwd: Path, python: list[str] | None = None, env: dict[str, str] | None = None
) -> tuple[set[int], list[list[str]], str]:
    """Run MAIN_SCRIPT (page.py logs as it does); return the worker pids, each run of a script, and stderr."""
    log = tmp_path / "ran.log"
    script = tmp_path / "caller.py"
    script.write_text(MAIN_SCRIPT.format(root=str(ROOT), log=str(log), swap=swap))
    (tmp_path / "page.py").write_text(MAIN_SCRIPT.format(root=str(ROOT), log=str(log), swap=False))
    command = [*(python or [sys.executable]), str(script)]
    run = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, check=True)
    worker_pids = {int(pid) for line in run.stdout.split("\n") if line for pid in line.split()}
    return worker_pids, [line.split() for line in log.read_text().splitlines()], run.stderr


@pytest.mark.parametrize("folder", ["project", "elsewhere"])
@pytest.mark.parametrize("swap", [False, True], ids=["script", "streamlit-swapped-main"])
def test_workers_do_not_run_the_callers_main_script(tmp_path: Path, swap: bool, folder: str) -> None:
    """multiprocessing loads the caller's main script in every process it starts; a validation worker needs nothing
    from it and starts without it (worker_main.py). It used to run it in every worker of every validation: under
    Streamlit, the `streamlit` command (an import of Streamlit, ~0.2 s) or, once a page had run, the page script.

    From any folder: Python 3.11's forkserver imports with the caller's working directory on its path, not the
    caller's sys.path (CPython gh-117378), and finds lora_core because the set-up scripts install it."""
    worker_pids, ran, stderr = _run_caller(tmp_path, swap=swap, cwd=ROOT if folder == "project" else tmp_path)
    assert ran == [[ran[0][0], "__main__", "caller.py"]]  # here, and in no worker or forkserver
    assert len(worker_pids) >= 2 and "start slowly" not in stderr


def test_a_forkserver_that_cannot_import_the_validator_is_reported(tmp_path: Path) -> None:
    """Where lora_core is not installed, a forkserver started outside the project folder cannot preload it: the
    workers still work (they import it on their own, as before), and start_worker_server says why they start slowly.

    Not installed, here: `python -S` skips the site folder's .pth files (lora_core.pth among them), and PYTHONPATH
    gives back the installed libraries alone; the caller script puts the project on its own sys.path."""
    site_packages = next(path for path in sys.path if path.endswith("site-packages"))
    env = {**os.environ, "PYTHONPATH": site_packages}
    worker_pids, ran, stderr = _run_caller(tmp_path, swap=False, cwd=tmp_path, python=[sys.executable, "-S"], env=env)
    assert len(worker_pids) >= 2 and "Validation workers will start slowly" in stderr
    assert [name for _pid, name, _file in ran].count("__mp_main__") >= len(worker_pids)  # the old way, still correct
