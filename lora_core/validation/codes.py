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

# What to do about each line-level code, in general: the detail page shows it for a code none of whose lines is
# among the listed ones (the report lists the first KEPT_LINE_ISSUES in line order, and a code that first appears
# later is only counted). The listed issues carry their own, more specific suggestions.
CODE_ADVICE: dict[str, str] = {
    "invalid_json": "Fix the JSON of those lines: each must be one complete JSON object, with double-quoted strings "
    "and no NaN or Infinity.",
    "invalid_utf8": "Save the file as UTF-8.",
    "invalid_unicode": "Remove or repair the lone surrogate escapes (half of an emoji, often).",
    "line_too_long": "Shorten those lines: split long conversations into several examples.",
    "not_an_object": "Write each line as one JSON object.",
    "json_array_file": "Write one JSON object per line (JSONL), not one JSON array.",
    "misplaced_meta": "Keep `_meta` only as a line of its own at the top of the file.",
    "unknown_shape": "Use the keys of the chosen format on every line.",
    "wrong_format": "Choose the format that matches the file, or convert those lines.",
    "mixed_shapes": "Use one shape for every line of the file.",
    "missing_field": "Add the missing fields the messages name.",
    "wrong_type": "Give those fields the type the messages name.",
    "empty_content": "Fill in the empty messages, or remove them.",
    "out_of_range": "Bring those values into their allowed range.",
    "unknown_role": "Use only the roles system, user and assistant.",
    "role_order": "Make user and assistant messages alternate, starting with the user.",
    "no_assistant_message": "Give every example at least one assistant message to learn from.",
    "duplicate_id": "Give every line its own id.",
    "blank_line": "Remove the empty lines.",
    "empty_system_prompt": "Write a system prompt, or remove the empty one.",
    "missing_metadata": "Add the metadata objects if your exporter has them.",
    "missing_scaffolding": "Add the scaffolding keys to `conversation_metadata` if your exporter has them.",
    "low_quality": "Review the examples with a low quality score, or remove them.",
    "repeated_user_input": "Usually expected in BrightRun exports; otherwise drop the history's last user message.",
    "trailing_user_turn": "End each example with the assistant's answer.",
    "unknown_key": "Remove the keys the format does not know, or move them to the top level.",
    "duplicate_example": "Remove the repeated examples: they weigh them twice in training.",
    "over_context_limit": "Shorten or split those examples, or train with a longer context.",
}
