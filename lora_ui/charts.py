"""Altair charts of a validation report's statistics (FORMAT.md: histogram bins, messages per role)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import altair as alt
import pandas as pd

ROLE_ORDER = ("system", "user", "assistant")
ROLE_COLORS = ("#94a3b8", "#4f46e5", "#10b981")


def _count_axis() -> alt.Axis:
    """An axis of counts: whole numbers only (3 examples must not get ticks at 0.2, 0.4, …), 1.5k past 999."""
    return alt.Axis(tickMinStep=1, format="~s")


def _bin_label(low: int, high: int | None, largest: int | None = None) -> str:
    """`low–high-1`; the open last bin ends at the largest value when it is known ("2–3" for a file whose longest
    conversation has 3 turns, where "≥ 2" would suggest more), else is `≥ low`."""
    if high is None:
        if largest is None or largest < low:
            return f"≥ {low:,}"
        high = largest + 1
    if high - low == 1:
        return f"{low:,}"
    return f"{low:,}–{high - 1:,}"


def histogram_frame(bins: Sequence[Mapping[str, Any]], largest: int | None = None) -> pd.DataFrame:
    """One row per bin: its label, bounds and count; the open last bin, which holds `largest` (the distribution's
    max, FORMAT.md), gets `to = None`."""
    rows = [
        {
            "bin": _bin_label(int(b["from"]), None if b.get("to") is None else int(b["to"]), largest),
            "from": int(b["from"]),
            "to": b.get("to"),
            "count": int(b.get("count") or 0),
            "order": index,
        }
        for index, b in enumerate(bins)
    ]
    return pd.DataFrame(rows, columns=["bin", "from", "to", "count", "order"])


def _trim_leading_empty(frame: pd.DataFrame) -> pd.DataFrame:
    """Drop the empty low bins ([0,1), [1,2), …) before the first non-empty one: they only squeeze the chart."""
    nonzero = frame.index[frame["count"] > 0]
    if len(nonzero) == 0:
        return frame
    return frame.loc[nonzero[0] :].reset_index(drop=True)


def _limit_position(frame: pd.DataFrame, limit: int, largest: int | None = None) -> tuple[str, float] | None:
    """The bin holding `limit` and where in its band the limit falls (0 = left edge, 1 = right edge); the open last
    bin's band ends past `largest` when it is known, else the limit is put in its middle."""
    for row in frame.to_dict("records"):
        high = row["to"]
        open_ended = high is None or pd.isna(high)
        if row["from"] <= limit and (open_ended or limit < int(high)):
            if limit == row["from"]:
                return str(row["bin"]), 0.0
            if open_ended:
                if largest is None or largest < limit:
                    return str(row["bin"]), 0.5
                high = largest + 1
            return str(row["bin"]), (limit - row["from"]) / (int(high) - row["from"])
    return None


def tokens_histogram(
    bins: Sequence[Mapping[str, Any]], context_limit: int | None, max_tokens: int | None = None
) -> alt.Chart | alt.LayerChart:
    """Examples per token-count bin, with the context limit marked by a labelled rule.

    The bins are powers of two, so the x axis is ordinal (one bar per bin) and the rule sits inside the bin whose
    range holds the limit, at its proportional place (exactly on the edge for the default 2048). When no example
    reaches the limit (`max_tokens` below it) there is nothing to mark and no rule is drawn.
    """
    frame = _trim_leading_empty(histogram_frame(bins, max_tokens))
    # Bins that start at or past the limit hold (almost) only examples a trainer would truncate.
    frame["over"] = frame["from"] >= context_limit if context_limit else False
    order = frame["bin"].tolist()
    bars = (
        alt.Chart(frame)
        .mark_bar(cornerRadiusTopLeft=3, cornerRadiusTopRight=3)
        .encode(
            x=alt.X("bin:N", sort=order, title="Tokens per example", axis=alt.Axis(labelAngle=-30)),
            y=alt.Y("count:Q", title="Examples", axis=_count_axis()),
            color=alt.condition(alt.datum.over, alt.value("#ef4444"), alt.value("#4f46e5")),
            tooltip=[alt.Tooltip("bin:N", title="Tokens"), alt.Tooltip("count:Q", title="Examples")],
        )
    )
    reaches_limit = max_tokens is None or (context_limit is not None and max_tokens > context_limit)
    position = _limit_position(frame, context_limit, max_tokens) if context_limit and reaches_limit else None
    if position is None:
        return bars.properties(height=280)
    limit_bin, band_position = position
    marker = pd.DataFrame({"bin": [limit_bin], "label": [f"context limit {context_limit:,}"]})
    x = alt.X("bin:N", sort=order, bandPosition=band_position)
    rule = alt.Chart(marker).mark_rule(color="#ef4444", strokeDash=[6, 4], strokeWidth=2).encode(x=x)
    text = (
        alt.Chart(marker)
        .mark_text(color="#ef4444", align="left", dx=4, dy=-6, baseline="bottom", fontWeight="bold")
        .encode(x=x, y=alt.value(12), text="label:N")
    )
    return alt.layer(bars, rule, text).properties(height=280)


def turns_histogram(bins: Sequence[Mapping[str, Any]], max_turns: int | None = None) -> alt.Chart:
    """Conversations per number of turns (user and assistant messages)."""
    # Labels and counts only: FORMAT.md bounds no turn_number, and a bin's bounds past 64 bits (a turn_number of
    # 10**20) cannot go into the chart's Arrow table.
    frame = _trim_leading_empty(histogram_frame(bins, max_turns))[["bin", "count"]]
    return (
        alt.Chart(frame)
        .mark_bar(cornerRadiusTopLeft=3, cornerRadiusTopRight=3, color="#6366f1")
        .encode(
            x=alt.X("bin:N", sort=frame["bin"].tolist(), title="Turns per conversation", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("count:Q", title="Conversations", axis=_count_axis()),
            tooltip=[alt.Tooltip("bin:N", title="Turns"), alt.Tooltip("count:Q", title="Conversations")],
        )
        .properties(height=280)
    )


def messages_per_role(counts: Mapping[str, int]) -> alt.Chart:
    """Training messages per role, in chat order (system, user, assistant, then any other)."""
    roles = [r for r in ROLE_ORDER if r in counts] + sorted(r for r in counts if r not in ROLE_ORDER)
    frame = pd.DataFrame({"role": roles, "messages": [int(counts[r] or 0) for r in roles]})
    return (
        alt.Chart(frame)
        .mark_bar(cornerRadiusTopRight=3, cornerRadiusBottomRight=3)
        .encode(
            y=alt.Y("role:N", sort=roles, title=None),
            x=alt.X("messages:Q", title="Training messages", axis=_count_axis()),
            color=alt.Color(
                "role:N",
                scale=alt.Scale(domain=list(ROLE_ORDER), range=list(ROLE_COLORS)),
                legend=None,
            ),
            tooltip=["role:N", "messages:Q"],
        )
        .properties(height=180)
    )
