"""The CLI's summary shows the text around the column or byte an issue names, with a caret under it
(excerpts.py); the JSON report is unchanged."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lora_core.__main__ import main
from lora_core.validation import ValidationLimits
from lora_core.validation.excerpts import (
    AFTER,
    BEFORE,
    Excerpt,
    byte_excerpt,
    column_excerpt,
    display_width,
    excerpt_positions,
    read_excerpts,
)
from lora_core.validation.validator import validate_file

GOOD = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
MISSING_COMMA = b'{"messages": [{"role": "user", "content": "hi"} {"role": "assistant", "content": "yo"}]}'


def marked(excerpt: Excerpt) -> str:
    """The character the caret points at (the caret's column is its index in these ASCII texts)."""
    assert excerpt.caret == excerpt.at
    return excerpt.text[excerpt.at]


def summary_lines(tmp_path: Path, content: bytes, capsys: Any, name: str = "data.jsonl") -> list[str]:
    path = tmp_path / name
    path.write_bytes(content)
    assert main(["validate", str(path), "--format", "openai_chat"]) == 1
    return capsys.readouterr().out.splitlines()


def caret_under(lines: list[str], issue_start: str) -> tuple[str, str]:
    """For the issue line starting with `issue_start`: (its "near:" line, the character its caret points at)."""
    at = next(index for index, line in enumerate(lines) if line.lstrip().startswith(issue_start))
    near, caret = lines[at + 1], lines[at + 2]
    assert near.startswith("      near: ") and caret.strip() == "^"
    return near, near[caret.index("^")]


def test_an_invalid_json_line_shows_the_text_at_its_column(tmp_path: Path, capsys: Any) -> None:
    lines = summary_lines(tmp_path, GOOD * 3 + MISSING_COMMA + b"\n" + GOOD, capsys)
    near, pointed = caret_under(lines, "line 4, column 49: invalid_json")
    assert pointed == "{" and '"hi"} {"role": "assistant"' in near
    # The fix follows the excerpt; the ready lines get none.
    assert lines[lines.index(near) + 2].startswith("      fix: ")
    assert sum(line.startswith("      near: ") for line in lines) == 1


def test_the_end_of_a_cut_line_is_marked_after_its_last_character(tmp_path: Path, capsys: Any) -> None:
    cut = GOOD[:60]
    lines = summary_lines(tmp_path, GOOD + cut + b"\n", capsys)
    issue = next(line for line in lines if "invalid_json" in line and line.startswith("  line 2"))
    assert "unexpected end of data at character 61" in issue
    near = lines[lines.index(issue) + 1]
    caret = lines[lines.index(issue) + 2]
    assert near.endswith(cut.decode()[-(BEFORE):]) and near.count("…") == 1  # cut before, nothing after
    assert caret.index("^") == len(near)  # one past the last character


def test_an_invalid_utf8_byte_is_shown_escaped_under_the_caret(tmp_path: Path, capsys: Any) -> None:
    line = b'{"messages": [{"role": "user", "content": "Zo\xeb says hi"}, {"role": "assistant", "content": "ok"}]}\n'
    lines = summary_lines(tmp_path, line, capsys)
    near, pointed = caret_under(lines, "line 1, byte 45: invalid_utf8")
    assert pointed == "\\" and "Zo\\xeb says" in near


def test_a_long_line_is_cut_around_the_column() -> None:
    line = b'{"text": "' + b"a" * 500 + b'" "b": "' + b"b" * 100 + b'"}'
    excerpt = column_excerpt(line, 512)  # the space before "b"
    assert excerpt.text.startswith("…") and excerpt.text.endswith("…")
    assert len(excerpt.text) == 1 + BEFORE + AFTER + 1
    assert excerpt.caret == 1 + BEFORE and marked(excerpt) == " "


def test_wide_characters_and_control_characters_keep_the_caret_in_place() -> None:
    line = '{"a": "漢字\tb"  x}'.encode()
    excerpt = column_excerpt(line, 15)  # x: 14 characters before it
    assert excerpt.text == '{"a": "漢字\\tb"  x}'  # the tab named, not expanded
    assert excerpt.caret == display_width('{"a": "漢字\\tb"  ') == 17  # two columns for each of 漢 and 字
    assert excerpt.at == 15 and excerpt.marked("▶") == '{"a": "漢字\\tb"  ▶x}'
    assert excerpt.marked("▶", before=15) == excerpt.marked("▶")
    assert excerpt.marked("▶", before=3) == '…"  ▶x}'
    assert display_width("e\u0301") == 1  # a combining accent takes no column
    assert display_width("กัก") == 2 and display_width("\u2764\ufe0f") == 1  # a Thai vowel sign, a selector


def test_a_byte_window_starts_and_ends_between_characters() -> None:
    line = "漢".encode() * 20 + b"\xff" + "字".encode() * 20  # three bytes each
    excerpt = byte_excerpt(line, 60)
    assert excerpt.text.startswith("…漢") and "\\x" not in excerpt.text.replace("\\xff", "")
    assert excerpt.text.endswith("字…")
    assert excerpt.text[excerpt.at :].startswith("\\xff字")
    assert excerpt.caret == 2 * (excerpt.at - 1) + 1  # "…" is one column, each 漢 two


def test_invisible_characters_are_named_by_their_escapes() -> None:
    line = '{"price": "5 · 6"},\u00a0{"x": "\u200b"}'.encode()
    excerpt = column_excerpt(line, 20)  # the no-break space
    assert excerpt.text == '{"price": "5 · 6"},\\u00a0{"x": "\\u200b"}'  # a real middle dot stays one
    assert excerpt.text[excerpt.at :].startswith("\\u00a0")
    assert column_excerpt("a\rb\U000e0001".encode(), 1).text == "a\\rb\\U000e0001"


def test_a_crlf_line_end_is_not_shown() -> None:
    line = b'{"a": "unfinished\r'
    excerpt = column_excerpt(line, len(line) + 1)  # past the end of the line, CR included
    assert excerpt.text == '{"a": "unfinished' and excerpt.at == len(excerpt.text)
    assert byte_excerpt(b'{"a": "Zo\xeb"}\r', 9).text == '{"a": "Zo\\xeb"}'


def test_lines_are_numbered_as_the_report_numbers_them_in_a_gzip_file_with_a_bom(tmp_path: Path) -> None:
    content = b"\xef\xbb\xbf" + GOOD + b"\n" + b"\r\n".join([GOOD.strip(), MISSING_COMMA, GOOD.strip()]) + b"\n"
    path = tmp_path / "data.jsonl.gz"
    path.write_bytes(gzip.compress(content))
    report = validate_file(path, "openai_chat").to_dict()
    wanted = excerpt_positions(report)
    assert list(wanted) == [4]  # after the BOM line and a blank line
    found = read_excerpts([path.read_bytes()], wanted, ValidationLimits())
    (excerpt,) = found.values()
    assert marked(excerpt) == "{" and excerpt.text.endswith("…")


def test_the_file_is_read_only_up_to_the_last_line_needed() -> None:
    read: list[int] = []

    def chunks() -> Iterator[bytes]:
        for index in range(100_000):
            read.append(index)
            yield GOOD

    found = read_excerpts(chunks(), {3: [("column", 5)]}, ValidationLimits())
    assert list(found) == [(3, "column", 5)]
    assert len(read) <= 100  # the reader's first 8 KiB (it sniffs for binary files), not 9 MB
    assert read_excerpts(chunks(), {}, ValidationLimits()) == {}


def test_issues_without_a_position_get_no_excerpt(tmp_path: Path, capsys: Any) -> None:
    lines = summary_lines(tmp_path, b'{"messages": [{"role": "human", "content": "hi"}]}\n', capsys)
    assert any("unknown_role" in line for line in lines)
    assert not any(line.startswith("      near: ") for line in lines)


@pytest.mark.parametrize("gone", [False, True], ids=["file there", "file gone before the excerpts"])
def test_the_json_report_has_no_excerpts_and_a_vanished_file_drops_them(
    tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch, gone: bool
) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(MISSING_COMMA + b"\n")
    assert main(["validate", str(path), "--format", "openai_chat", "--json"]) == 1
    assert "near: " not in capsys.readouterr().out and "excerpt" not in json.dumps(validate_file(path).to_dict())
    if gone:
        import lora_core.validation.excerpts as excerpts_module

        def vanish(*_args: object, **_kwargs: object) -> dict[Any, Any]:
            raise FileNotFoundError(2, "No such file or directory")

        monkeypatch.setattr(excerpts_module, "read_excerpts", vanish)
    assert main(["validate", str(path), "--format", "openai_chat"]) == 1
    out = capsys.readouterr().out
    assert "line 1, column 49: invalid_json" in out
    assert ("near: " in out) is not gone


def test_a_terminal_that_cannot_show_the_text_gets_escapes_not_a_crash(tmp_path: Path) -> None:
    """A legacy code page (cp1252 on Windows, or a redirect) cannot encode 漢: the summary escapes it; exit code 1
    still means "not valid", not a crash."""
    path = tmp_path / "cjk.jsonl"
    path.write_bytes('{"messages": [{"role": "漢", "content": "字"} {"role": "assistant"}]}\n'.encode())
    result = subprocess.run(
        [sys.executable, "-m", "lora_core", "validate", str(path), "--format", "openai_chat"],
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": "cp1252"},
        check=False,
    )
    assert result.returncode == 1 and not result.stderr
    out = result.stdout.decode("cp1252")
    assert "NOT READY" in out and "\\u6f22" in out and "near: " in out
