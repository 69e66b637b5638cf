"""The detail page's charts: histogram bins as bars, the context limit as a rule only where it means something."""

from __future__ import annotations

from lora_ui import charts
from lora_ui.components import (
    escape_markdown,
    escape_markdown_block,
    escape_markdown_keeping_code,
    format_size,
    format_thousands,
    tab_title,
)

EQ12_TOKEN_BINS = [
    {"from": 0, "to": 1, "count": 0},
    {"from": 1, "to": 2, "count": 0},
    {"from": 256, "to": 512, "count": 4},
    {"from": 512, "to": 1024, "count": 11},
    {"from": 1024, "to": 2048, "count": 21},
    {"from": 2048, "to": None, "count": 8},
]


def _layers(chart: object) -> list[dict]:
    spec = chart.to_dict()  # type: ignore[attr-defined]
    return spec.get("layer", [spec])


def test_token_histogram_drops_leading_empty_bins_and_marks_the_limit_on_its_edge() -> None:
    chart = charts.tokens_histogram(EQ12_TOKEN_BINS, 2048, max_tokens=2806)
    _bars, rule, label = _layers(chart)
    frame = charts._trim_leading_empty(charts.histogram_frame(EQ12_TOKEN_BINS, 2806))
    assert frame["bin"].tolist() == ["256–511", "512–1,023", "1,024–2,047", "2,048–2,806"]  # the max ends the last
    assert rule["mark"]["type"] == "rule"
    assert rule["encoding"]["x"]["bandPosition"] == 0.0
    assert label["encoding"]["text"] == {"field": "label", "type": "nominal"}


def test_limit_inside_a_bin_sits_at_its_proportional_place() -> None:
    frame = charts.histogram_frame(EQ12_TOKEN_BINS)
    assert charts._limit_position(frame, 1536) == ("1,024–2,047", 0.5)
    assert charts._limit_position(frame, 4096) == ("≥ 2,048", 0.5)  # an open bin without its max: the middle
    frame = charts.histogram_frame(EQ12_TOKEN_BINS, 3071)
    assert charts._limit_position(frame, 2560, 3071) == ("2,048–3,071", 0.5)


def test_open_last_bin_ends_at_the_largest_value() -> None:
    """A tiny file's longest conversation of 3 turns is "2–3", not "≥ 2", which suggests longer ones."""
    bins = [{"from": 0, "to": 1, "count": 0}, {"from": 1, "to": 2, "count": 0}, {"from": 2, "to": None, "count": 4}]
    assert charts.histogram_frame(bins, 3)["bin"].tolist() == ["0", "1", "2–3"]
    assert charts.histogram_frame(bins, 2)["bin"].tolist() == ["0", "1", "2"]
    assert charts.histogram_frame(bins)["bin"].tolist() == ["0", "1", "≥ 2"]  # no max in the report
    spec = charts.turns_histogram(bins, 3).to_dict()
    assert spec["encoding"]["x"]["sort"] == ["2–3"]


def test_no_rule_when_every_example_fits() -> None:
    bins = [{"from": 0, "to": 1, "count": 0}, {"from": 1, "to": 2, "count": 0}, {"from": 2, "to": None, "count": 9}]
    assert len(_layers(charts.tokens_histogram(bins, 2048, max_tokens=2))) == 1


def test_count_axes_have_whole_ticks_only() -> None:
    """Tiny counts (EQ-12 has 4–21 examples per bin) must not get ticks at 0.2, 0.4, …"""
    tokens_bars = _layers(charts.tokens_histogram(EQ12_TOKEN_BINS, 2048, max_tokens=2806))[0]
    turns = charts.turns_histogram([{"from": 2, "to": 3, "count": 1}, {"from": 3, "to": None, "count": 2}]).to_dict()
    for axis in (tokens_bars["encoding"]["y"]["axis"], turns["encoding"]["y"]["axis"]):
        assert axis["tickMinStep"] == 1
        assert axis["format"] == "~s"


def test_messages_per_role_keeps_chat_order() -> None:
    spec = charts.messages_per_role({"assistant": 3, "user": 3, "system": 1}).to_dict()
    assert spec["encoding"]["y"]["sort"] == ["system", "user", "assistant"]
    assert spec["encoding"]["x"]["axis"]["tickMinStep"] == 1  # counts: no ticks at 0.1, 0.2, …


def test_formatting_helpers() -> None:
    assert format_size(391_600) == "382.4 KiB"
    assert format_size(20) == "20 B"
    assert format_thousands(58_316) == "58.3K"
    assert format_thousands(999) == "999"
    assert format_thousands(999_949) == "999.9K"
    assert format_thousands(999_950) == "1.00M"  # not 1,000.0K
    assert format_thousands(1_420_000) == "1.42M"  # not 1,420.0K
    assert format_thousands(12_345_678) == "12.3M"
    assert format_thousands(123_456_789) == "123M"
    assert format_thousands(999_500_000) == "1.00B"
    assert escape_markdown("a\n*b*") == "a \\*b\\*"
    assert tab_title("\u202eSales\nQ3") == "Sales Q3 · LoRA Dataset Manager"
    assert tab_title("x" * 80) == "x" * 59 + "… · LoRA Dataset Manager"
    # A right-to-left override left open in a name turned the page's own text after it around.
    assert escape_markdown("\u202eRTL name lpsj.exe\u2066") == "RTL name lpsj\\.exe"
    assert escape_markdown_keeping_code("Rename `\u202egpt` to `assistant`.") == "Rename `gpt` to `assistant`\\."
    # Our messages' `code` spans stay code; the rest is literal, and an unpaired backtick leaves all of it so.
    assert escape_markdown_keeping_code("44 of them `wrong_format`; *x*\n`a b`") == (
        "44 of them `wrong_format`\\; \\*x\\* `a b`"
    )
    assert escape_markdown_keeping_code("a `[x](http://e.com)` `") == "a \\`\\[x\\]\\(http\\:\\/\\/e\\.com\\)\\` \\`"
    assert escape_markdown_keeping_code("empty `` span") == "empty \\`\\` span"
    assert escape_markdown_block("# x\n\n<b>") == "\\# x  \n  \n\\<b\\>"


def test_every_line_level_code_has_general_advice() -> None:
    """A code first seen past the listed lines still gets a "What to do" on the detail page."""
    from lora_core.validation.codes import CODE_ADVICE

    line_level = {
        "missing_field", "wrong_type", "empty_content", "out_of_range", "unknown_role", "role_order",
        "no_assistant_message", "duplicate_id", "misplaced_meta", "mixed_shapes", "wrong_format", "unknown_shape",
        "blank_line", "empty_system_prompt", "missing_metadata", "missing_scaffolding", "low_quality",
        "repeated_user_input", "trailing_user_turn", "unknown_key", "duplicate_example", "over_context_limit",
        "invalid_utf8", "invalid_json", "invalid_unicode", "not_an_object", "line_too_long",
    }  # fmt: skip
    assert line_level <= set(CODE_ADVICE)
    assert all(advice.endswith(".") for advice in CODE_ADVICE.values())
