"""Field rules for one parsed record of each shape (`pair`, `conversation`, `messages`), per FORMAT.md.

Each check reports every problem it finds on the line (errors are data; it never stops at the first) and returns
the line's training messages, built from whatever of the record is well-typed, for the statistics.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from lora_core.validation.stats import TrainingMessage

MISSING: Any = object()

ROLES = ("system", "user", "assistant")
PAIR_HISTORY_ROLES = ("user", "assistant")
METADATA_FIELDS = ("conversation_metadata", "emotional_context", "training_metadata")
SCAFFOLDING_KEYS = ("persona_archetype", "emotional_arc", "emotional_arc_key", "training_topic", "training_topic_key")
MESSAGE_KEYS = frozenset({"role", "content", "name", "weight"})
LOW_QUALITY_BELOW = 2.5

# Role names other tools use, and the role each one means here.
_ROLE_MAPPING = {
    "human": "user",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "ai": "assistant",
}

AddIssue = Callable[..., None]


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        if math.isinf(value):  # 1e400, read by the standard library
            return number_text(value)
        # 2.0 and 1e300 are whole, but a JSON integer is written without a point or an exponent.
        if value.is_integer():
            return "a number written with a decimal point or exponent"
        return "a number with a fraction"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


# The most of a file's value (an id, a role, a key) that an issue's message quotes.
QUOTED_CHARS = 80


# The most digits of a number that an issue's message shows; a longer one is described by its length.
SHOWN_DIGITS = 24


def number_text(value: float) -> str:
    """A number of the file as an issue shows it: as written when short, described when it is not (an integer of
    400 digits, or 1e400, which Python reads as infinity)."""
    if isinstance(value, float) and math.isinf(value):
        return "a number too large to represent" if value > 0 else "a negative number too large to represent"
    if isinstance(value, int) and not isinstance(value, bool):
        digits = len(str(abs(value)))  # at most 4,300: json.loads refuses longer integers, as str() does
        if digits > SHOWN_DIGITS:
            return f"{'a negative' if value < 0 else 'a'} whole number of {digits:,} digits"
    return str(value)


def quoted(value: str) -> str:
    """A value of the file as an issue quotes it, cut to QUOTED_CHARS with "…": a 1 MB role quoted whole made a
    1 MB message on each of the 100 listed lines, then in the error banner and the owner's notification."""
    return value if len(value) <= QUOTED_CHARS else value[: QUOTED_CHARS - 1] + "…"


def duplicate_id(add: AddIssue, line: int, record_id: str, first: int) -> None:
    """`duplicate_id` on `line`, whose id the file's `first` line already uses."""
    add(
        "duplicate_id",
        line,
        "id",
        f"The id `{quoted(record_id)}` is already used on line {first}.",
        "Give every line its own id.",
    )


class RecordRules:
    """Checks records one line at a time, knowing nothing of other lines.

    `duplicate_id` needs every earlier line, so each id is handed to `note_id(line, id)` at the point where its
    issue belongs, and whoever merges the lines in order decides (see `duplicate_id`).
    """

    def __init__(
        self,
        fmt: str,
        add: AddIssue,
        note_id: Callable[[int, str], None],
        counted: Callable[[str], bool] = lambda _code: False,
    ) -> None:
        self.fmt = fmt
        self.check_scaffolding = fmt == "brightrun_lora_v4"
        self.add = add
        self.note_id = note_id
        # `counted(code)` counts an issue without its words when the report can list no more of its kind (True):
        # for the warnings a whole export repeats on every line, whose messages would be formatted for nothing.
        self.counted = counted
        self._line_bytes = b""
        # What `exact_number` parsed of the current line, if it had to (up to the line limit, as Python objects).
        self._exact_line: Any = None

    @property
    def line_bytes(self) -> bytes:
        """The raw line being checked, for `exact_number`; the validator sets it before each record."""
        return self._line_bytes

    @line_bytes.setter
    def line_bytes(self, line: bytes) -> None:
        self._line_bytes = line
        self._exact_line = None  # the last line's parse is let go, not kept for the rest of the file

    # -- shared helpers ------------------------------------------------------------------------------------------

    def exact_number(self, value: float, *path: str | int) -> int | float:
        """The JSON number at `path` as written, where orjson gave a float for an integer beyond 64 bits.

        orjson parses integers outside [-2^63, 2^64) as floats, which would make `turn_number: 10**20` look like
        `1e20` (wrong_type). Such values are rare, so only then is the line parsed again with the standard library.
        """
        if not (value.is_integer() and abs(value) >= 2**63):
            return value
        # Parsed once per line: a line of thousands of such weights was parsed again for each (quadratic).
        if self._exact_line is None:
            self._exact_line = json.loads(self._line_bytes)
        exact: Any = self._exact_line
        for key in path:
            exact = exact[key]
        return exact

    def missing(self, line: int, field: str, what: str) -> None:
        self.add(
            "missing_field",
            line,
            field,
            f"`{field}` is missing; it should be {what}.",
            f"Add `{field}` ({what}) to this line.",
        )

    def wrong_type(self, line: int, field: str, value: Any, what: str) -> None:
        self.add(
            "wrong_type",
            line,
            field,
            f"`{field}` is {json_type(value)}; it should be {what}.",
            f"Change `{field}` to {what}.",
        )

    def required_string(self, obj: dict[str, Any], line: int, field: str) -> str | None:
        """A field that must be a non-empty string; returns it when it is a string (even empty)."""
        value = obj.get(field, MISSING)
        if value is MISSING:
            self.missing(line, field, "a non-empty string")
        elif type(value) is not str:
            self.wrong_type(line, field, value, "a non-empty string")
        else:
            if not value:
                self.add(
                    "empty_content",
                    line,
                    field,
                    f"`{field}` is empty.",
                    f"Fill in `{field}` or remove the line.",
                )
            return value
        return None

    def role_of(self, entry: dict[str, Any], line: int, field: str, allowed: tuple[str, ...]) -> str | None:
        """The entry's role when it is valid; otherwise report it (missing, wrong type, unknown) and return None."""
        role = entry.get("role", MISSING)
        if role is MISSING:
            self.missing(line, f"{field}.role", f"one of {', '.join(allowed)}")
            return None
        if type(role) is not str:
            self.wrong_type(line, f"{field}.role", role, f"a string, one of {', '.join(allowed)}")
            return None
        if role in allowed:
            return role
        lowered = role.lower()
        if lowered in allowed:
            hint = f"Roles are case-sensitive: write `{lowered}`."
        elif lowered in _ROLE_MAPPING:
            hint = f"Rename `{quoted(role)}` to `{_ROLE_MAPPING[lowered]}`."
        elif lowered in ("tool", "function"):
            hint = "Tool and function calls are not supported: remove these messages or rewrite them as text."
        elif role == "system":
            hint = "Put the system message in `system_prompt`, not in the history."
        else:
            hint = f"Use one of: {', '.join(allowed)}."
        self.add(
            "unknown_role",
            line,
            f"{field}.role",
            f"The role `{quoted(role)}` is not one of {', '.join(allowed)}.",
            hint,
        )
        return None

    def role_order(self, line: int, field: str, role: str, previous: str | None) -> None:
        if role == "system":
            message = "A system message can only be the first message of a conversation."
            suggestion = "Move the system message to the start, or merge it into the first one."
        elif previous is None:
            message = f"The conversation starts with {_article(role)} {role} message; it must start with the user."
            suggestion = "Start with the user's message (after an optional system message)."
        else:
            message = f"A {role} message follows another {previous} message; user and assistant must alternate."
            suggestion = "Merge the consecutive messages, or add the missing reply between them."
        self.add("role_order", line, f"{field}.role", message, suggestion)

    # -- pair ----------------------------------------------------------------------------------------------------

    def check_pair(self, obj: dict[str, Any], line: int) -> tuple[list[TrainingMessage], str | None, int]:
        """Returns (training messages, conversation_id or None, turn_number or 0)."""
        add = self.add
        record_id = obj.get("id")
        if type(record_id) is not str or not record_id:
            record_id = self.required_string(obj, line, "id")
        if record_id:
            self.note_id(line, record_id)
        conversation_id = obj.get("conversation_id")
        if type(conversation_id) is not str or not conversation_id:
            conversation_id = self.required_string(obj, line, "conversation_id") or None

        turn_number = obj.get("turn_number", MISSING)
        if type(turn_number) is float:
            turn_number = self.exact_number(turn_number, "turn_number")
        turns = 0
        if turn_number is MISSING:
            self.missing(line, "turn_number", "a whole number, 1 or more")
        elif type(turn_number) is not int:  # also refuses True and 2.0
            self.wrong_type(line, "turn_number", turn_number, "a whole number such as 1 (not 1.0 or true)")
        elif turn_number < 1:
            add(
                "out_of_range",
                line,
                "turn_number",
                f"`turn_number` is {number_text(turn_number)}; turns are numbered from 1.",
                "Number the turns 1, 2, 3, …",
            )
        else:
            turns = turn_number

        messages: list[TrainingMessage] = []
        system_prompt = obj.get("system_prompt", MISSING)
        if system_prompt is MISSING:
            self.missing(line, "system_prompt", 'a string (use "" for none)')
        elif type(system_prompt) is not str:
            self.wrong_type(line, "system_prompt", system_prompt, 'a string (use "" for none)')
        elif not system_prompt:
            # Only "" is empty (FORMAT.md): a prompt of spaces is a string, trained as the system message.
            add(
                "empty_system_prompt",
                line,
                "system_prompt",
                "`system_prompt` is empty, so this example trains without a system message.",
                "Add the system prompt the model will run with, or ignore this if it runs without one.",
            )
        else:
            messages.append(("system", system_prompt, None, False))

        user_input = obj.get("current_user_input", MISSING)
        if user_input is MISSING:
            self.missing(line, "current_user_input", "a non-empty string")
            user_input = None
        elif type(user_input) is not str:
            self.wrong_type(line, "current_user_input", user_input, "a non-empty string")
            user_input = None
        elif not user_input:
            add(
                "empty_content",
                line,
                "current_user_input",
                "`current_user_input` is empty: there is no user message for the answer to respond to.",
                "Fill in the user's message or remove the line.",
            )

        history = obj.get("conversation_history", MISSING)
        if history is MISSING:
            self.missing(line, "conversation_history", "an array of earlier messages ([] for none)")
        elif type(history) is not list:
            self.wrong_type(line, "conversation_history", history, "an array of earlier messages ([] for none)")
        else:
            self._check_history(history, line, user_input, messages)

        if user_input is not None:
            messages.append(("user", user_input, None, False))

        target = obj.get("target_response", MISSING)
        if target is MISSING:
            self.missing(line, "target_response", "the assistant's answer, a non-empty string")
        elif type(target) is not str:
            self.wrong_type(line, "target_response", target, "the assistant's answer, a non-empty string")
        else:
            if not target or target.isspace():
                add(
                    "empty_content",
                    line,
                    "target_response",
                    "`target_response` is empty: there is no answer to learn from.",
                    "Write the assistant's answer or remove the line.",
                )
            messages.append(("assistant", target, None, True))

        self._check_metadata(obj, line)
        return messages, conversation_id, turns

    def usual_pair(self, obj: dict[str, Any], line: int) -> tuple[list[str], str, int] | None:
        """`check_pair` for the exporter's usual line, on which it finds nothing but `repeated_user_input`.

        Returns the texts of the line's training messages (the system prompt, the history without a repeated last
        user entry, the user input, the target: their roles follow from their places, see
        stats.ExampleCounter.add_pair), its conversation_id and its turn_number, having noted its id and reported
        `repeated_user_input` as `check_pair` does. Returns None, having done nothing, for any other line, which
        `check_pair` then checks. Nearly every line of an export is usual, and this checks it without a call per
        field or a tuple per message (with stats.ExampleCounter.add_pair, ~6% of a worker's time on an export).
        tests/validation/test_usual_pairs.py proves the reports equal with and without it.
        """
        get = obj.get
        record_id = get("id")
        conversation_id = get("conversation_id")
        turn_number = get("turn_number")
        system_prompt = get("system_prompt")
        user_input = get("current_user_input")
        history = get("conversation_history")
        target = get("target_response")
        metadata = get("conversation_metadata")
        training = get("training_metadata")
        if not (
            type(record_id) is str
            and record_id
            and type(conversation_id) is str
            and conversation_id
            and type(turn_number) is int
            and turn_number >= 1
            and type(system_prompt) is str
            and system_prompt
            and type(user_input) is str
            and user_input
            and type(history) is list
            and type(target) is str
            and target
            and not target.isspace()
            and type(metadata) is dict
            and type(get("emotional_context")) is dict
            and type(training) is dict
        ):
            return None
        if self.check_scaffolding and not _has_scaffolding(metadata):
            return None
        score = training.get("quality_score", MISSING)
        if score is not MISSING and not _usual_score(score):
            return None
        texts = [system_prompt]
        append = texts.append
        expected = "user"
        for entry in history:
            if type(entry) is not dict:
                return None
            content = entry.get("content")
            if entry.get("role") != expected or type(content) is not str or not content:
                return None
            append(content)
            expected = "assistant" if expected == "user" else "user"
        repeated = expected == "assistant"  # the history ends with a user entry: usual when it repeats the input
        if repeated:
            content = texts.pop()
            if content != user_input:
                return None
        self.note_id(line, record_id)
        if repeated:
            self._repeated_user_input(line, len(history) - 1)
        append(user_input)
        append(target)
        return texts, conversation_id, turn_number

    def _check_history(
        self, history: list[Any], line: int, user_input: str | None, messages: list[TrainingMessage]
    ) -> None:
        """History entries, their alternation, and the exporter's repeated last user message.

        Fast path for the exporter's usual history (objects with a non-empty string content, roles alternating
        from `user`), which needs none of the bookkeeping of `_check_history_entries`; anything else is checked
        again from the start there.
        """
        start = len(messages)
        append = messages.append
        expected = "user"
        for entry in history:
            if type(entry) is not dict:
                break
            role = entry.get("role")
            content = entry.get("content")
            if role != expected or type(content) is not str or not content:
                break
            append((role, content, None, False))
            expected = "assistant" if expected == "user" else "user"
        else:
            if expected == "assistant":  # it ends with a user entry
                index = len(history) - 1
                content = messages[-1][1]
                if content == user_input:
                    messages.pop()
                    self._repeated_user_input(line, index)
                elif user_input is not None:  # a missing input was reported; there is nothing to differ from
                    self._history_ends_with_user(line, index)
            return
        del messages[start:]
        self._check_history_entries(history, line, user_input, messages)

    def _repeated_user_input(self, line: int, index: int) -> None:
        if self.counted("repeated_user_input"):
            return
        self.add(
            "repeated_user_input",
            line,
            f"conversation_history[{index}]",
            "The last history entry repeats `current_user_input`; a trainer that appends both sends the "
            "same user message twice in a row, which strict chat templates reject.",
            "Drop the last history entry when converting (this validator's statistics already do), or "
            "re-export without it.",
        )

    def _history_ends_with_user(self, line: int, index: int) -> None:
        self.add(
            "role_order",
            line,
            f"conversation_history[{index}].role",
            "The history ends with a user message that differs from `current_user_input`, so two user "
            "messages would follow each other.",
            "End the history with the assistant's reply, or make its last user entry the same as `current_user_input`.",
        )

    def _check_history_entries(
        self, history: list[Any], line: int, user_input: str | None, messages: list[TrainingMessage]
    ) -> None:
        """`_check_history` for a history with something to report."""
        valid: list[tuple[int, str, str | None]] = []  # (index, role, content if a string) of role-valid entries
        order_reported = False
        expected = "user"
        for index, entry in enumerate(history):
            # Fast path for a well-formed entry; anything else is reported by the slow path.
            if type(entry) is dict:
                role = entry.get("role")
                content = entry.get("content")
                if not ((role == "user" or role == "assistant") and type(content) is str and content):
                    role, content = self._history_entry(entry, line, index)
            else:
                self.wrong_type(
                    line,
                    f"conversation_history[{index}]",
                    entry,
                    'an object such as {"role": "user", "content": "..."}',
                )
                continue
            if role is None:
                continue
            if role != expected and not order_reported:
                order_reported = True
                self.role_order(line, f"conversation_history[{index}]", role, valid[-1][1] if valid else None)
            expected = "assistant" if role == "user" else "user"
            valid.append((index, role, content))

        repeated_index = -1
        if valid and valid[-1][1] == "user":
            index, _role, content = valid[-1]
            # Equal as FORMAT.md says, whitespace included: an entry that differs only by a trailing space or newline
            # is another message (a chat template would send both), so `role_order`, not a warning.
            if content is not None and content == user_input:
                repeated_index = index
                self._repeated_user_input(line, index)
            elif not order_reported and content is not None and user_input is not None:
                # Only two messages can differ: a missing input or an entry without a usable content (each reported
                # already, and left out of the training messages) puts no two user messages in a row.
                self._history_ends_with_user(line, index)

        for index, role, content in valid:
            if content is not None and index != repeated_index:
                messages.append((role, content, None, False))

    def _history_entry(self, entry: dict[str, Any], line: int, index: int) -> tuple[str | None, str | None]:
        """Report what is wrong with one history entry; returns (role if valid, content if a string)."""
        field = f"conversation_history[{index}]"
        role = self.role_of(entry, line, field, PAIR_HISTORY_ROLES)
        content = entry.get("content", MISSING)
        if content is MISSING:
            self.missing(line, f"{field}.content", "a non-empty string")
            content = None
        elif type(content) is not str:
            self.wrong_type(line, f"{field}.content", content, "a non-empty string")
            content = None
        elif not content:
            self.add(
                "empty_content",
                line,
                f"{field}.content",
                f"The content of {field} is empty.",
                "Fill in the message or remove the entry.",
            )
        return role, content

    def _check_metadata(self, obj: dict[str, Any], line: int) -> None:
        add = self.add
        get = obj.get
        metadata = get("conversation_metadata", MISSING)
        emotional = get("emotional_context", MISSING)
        training = get("training_metadata", MISSING)
        if not (type(metadata) is dict and type(emotional) is dict and type(training) is dict):
            for name, value in zip(METADATA_FIELDS, (metadata, emotional, training), strict=True):
                if type(value) is dict:
                    continue
                if value is MISSING:
                    add(
                        "missing_metadata",
                        line,
                        name,
                        f"`{name}` is missing; filtering and reports by it will skip this line.",
                        f"Add `{name}` (an object) if your exporter has it.",
                    )
                else:
                    self.wrong_type(line, name, value, "an object")

        if self.check_scaffolding and type(metadata) is dict and not _has_scaffolding(metadata):
            # A key set to null or "" carries no more information than a missing one, so both count as missing.
            absent = [key for key in SCAFFOLDING_KEYS if metadata.get(key) in (None, "")]
            if absent:
                add(
                    "missing_scaffolding",
                    line,
                    "conversation_metadata",
                    f"`conversation_metadata` lacks the v4 scaffolding keys {', '.join(absent)}.",
                    "Re-export with BrightRun v4, or choose the `brightrun_lora_v3` format if this is a v3 export.",
                )

        if type(training) is dict and (score := training.get("quality_score", MISSING)) is not MISSING:
            if _usual_score(score):
                return  # nothing to report
            field = "training_metadata.quality_score"
            if type(score) not in (int, float):  # bool is refused here too
                self.wrong_type(line, field, score, "a number from 1 to 5")
            elif not 1 <= score <= 5:
                add(
                    "out_of_range",
                    line,
                    field,
                    f"`quality_score` is {number_text(score)}; it must be from 1 to 5.",
                    "Use the 1–5 quality scale.",
                )
            elif score < LOW_QUALITY_BELOW:
                add(
                    "low_quality",
                    line,
                    field,
                    f"`quality_score` is {score}, below {LOW_QUALITY_BELOW}: a low-quality example.",
                    "Review or remove low-quality examples; they teach the model their flaws.",
                )

    # -- conversation and messages -------------------------------------------------------------------------------

    def check_conversation(self, obj: dict[str, Any], line: int) -> tuple[list[TrainingMessage], str | None, int]:
        """Returns (training messages, conversation_id or None, user+assistant turns)."""
        conversation_id = self.required_string(obj, line, "conversation_id") or None
        turns = obj.get("turns", MISSING)
        if turns is MISSING:
            self.missing(line, "turns", 'an array of {"role", "content"} turns')
            return [], conversation_id, 0
        messages, count = self._check_chat(turns, line, "turns", is_openai=False)
        return messages, conversation_id, count

    def check_messages(self, obj: dict[str, Any], line: int) -> tuple[list[TrainingMessage], int]:
        """Returns (training messages, user+assistant messages)."""
        entries = obj.get("messages", MISSING)
        if entries is MISSING:  # a line of only `conversation_id` is checked as this shape in openai_chat
            self.missing(line, "messages", 'an array of {"role", "content"} messages')
            return [], 0
        return self._check_chat(entries, line, "messages", is_openai=True)

    def _check_chat(self, entries: Any, line: int, field: str, is_openai: bool) -> tuple[list[TrainingMessage], int]:
        """A `turns`/`messages` array: entries, roles, alternation, assistant presence; returns (messages, turns)."""
        add = self.add
        if type(entries) is not list:
            self.wrong_type(line, field, entries, 'an array of {"role", "content"} messages')
            return [], 0
        if not entries:
            add(
                "empty_content",
                line,
                field,
                f"`{field}` is an empty array: the conversation has no messages.",
                "Add the conversation's messages or remove the line.",
            )
            return [], 0

        valid: list[tuple[int, str, str | None, int | None]] = []  # (index, role, content, weight)
        for index, entry in enumerate(entries):
            where = f"{field}[{index}]"
            if type(entry) is not dict:
                self.wrong_type(line, where, entry, 'an object such as {"role": "user", "content": "..."}')
                continue
            role = self.role_of(entry, line, where, ROLES)
            content = entry.get("content", MISSING)
            if content is MISSING:
                self.missing(line, f"{where}.content", "a string")
                content = None
            elif type(content) is not str:
                what = "a string (tool calls and multimodal parts are not supported)" if is_openai else "a string"
                self.wrong_type(line, f"{where}.content", content, what)
                content = None
            elif role == "assistant" and (not content or content.isspace()):
                add(
                    "empty_content",
                    line,
                    f"{where}.content",
                    "This assistant message is empty: there is no answer to learn from.",
                    "Write the assistant's answer or remove the message.",
                )
            weight = None
            if is_openai:
                weight = self._check_message_keys(entry, line, index, role)
            if role is not None:
                valid.append((index, role, content, weight))

        order_reported = False
        previous: str | None = None
        expected = "user"
        for position, (index, role, _content, _weight) in enumerate(valid):
            if position == 0 and role == "system":
                continue
            if role != expected and not order_reported:
                order_reported = True
                self.role_order(line, f"{field}[{index}]", role, previous)
            previous = role
            expected = "assistant" if role == "user" else "user"

        has_assistant = any(role == "assistant" for _index, role, _content, _weight in valid)
        if not has_assistant:
            add(
                "no_assistant_message",
                line,
                field,
                "This conversation has no assistant message, so there is nothing to train on.",
                "Add the assistant's replies or remove the line.",
            )
        if valid and valid[-1][1] == "user":
            # Also beside no_assistant_message (FORMAT.md raises both): each names its own fix.
            add(
                "trailing_user_turn",
                line,
                f"{field}[{valid[-1][0]}]",
                "The conversation ends with a user message that gets no answer; it is not trained on.",
                "Add the assistant's reply or remove the last user message.",
            )

        messages: list[TrainingMessage] = []
        turns = 0
        for _index, role, content, weight in valid:
            if content is not None:
                # Turns are the user and assistant messages whose content is well-typed, as messages_per_role.
                if role != "system":
                    turns += 1
                # A target is every assistant message; in `messages`, those with weight 0 are context only
                # (an invalid weight counts as 1).
                messages.append((role, content, weight, role == "assistant" and weight != 0))
        return messages, turns

    def _check_message_keys(self, entry: dict[str, Any], line: int, index: int, role: str | None) -> int | None:
        """OpenAI message keys: `name` a string, `weight` 0/1 on assistant messages, others unknown.

        Returns the effective weight of an assistant message (0 or 1), None for other roles.
        """
        add = self.add
        where = f"messages[{index}]"
        for key in entry:
            if key not in MESSAGE_KEYS:
                add(
                    "unknown_key",
                    line,
                    f"{where}.{quoted(key)}",
                    f"`{quoted(key)}` is not a message key the OpenAI chat format knows; trainers ignore or reject it.",
                    "Keep only role, content, name and weight in messages; move other data to the top level.",
                )
        name = entry.get("name", MISSING)
        if name is not MISSING and type(name) is not str:
            self.wrong_type(line, f"{where}.name", name, "a string")
        weight = entry.get("weight", MISSING)
        if role != "assistant":
            if weight is not MISSING and role is not None:
                add(
                    "unknown_key",
                    line,
                    f"{where}.weight",
                    f"`weight` only applies to assistant messages; on {_article(role)} {role} message it is ignored.",
                    "Remove `weight` from this message.",
                )
            return None
        # An assistant message's effective weight: missing means trained (1), and so does an invalid weight.
        if weight is MISSING:
            return 1
        if type(weight) is float:
            weight = self.exact_number(weight, "messages", index, "weight")
        if type(weight) is not int:
            self.wrong_type(line, f"{where}.weight", weight, "the whole number 0 or 1")
            return 1
        if weight not in (0, 1):
            add(
                "out_of_range",
                line,
                f"{where}.weight",
                f"`weight` is {number_text(weight)}; it must be 0 (do not train on this message) or 1 (train on it).",
                "Set `weight` to 0 or 1.",
            )
            return 1
        return weight


def _has_scaffolding(metadata: dict[str, Any]) -> bool:
    """Every v4 scaffolding key set to a truthy value: nothing to report (the usual case, without building a list)."""
    return all(map(metadata.get, SCAFFOLDING_KEYS))


def _usual_score(score: Any) -> bool:
    """A quality score with nothing to report: a number (not a boolean) from LOW_QUALITY_BELOW to 5."""
    return (type(score) is float or type(score) is int) and LOW_QUALITY_BELOW <= score <= 5


def _article(role: str) -> str:
    """'an assistant', but 'a user' and 'a system': by sound, not by first letter."""
    return "an" if role == "assistant" else "a"
