"""Dataset statistics, `duplicate_example`, `over_context_limit` and samples, accumulated one example at a time.

Memory grows with the number of distinct values, not the number of examples, wherever that is possible: token and
turn counts are kept as value → count tallies (exact nearest-rank percentiles come from the tally), conversations as
id → turns, and duplicate detection as a 64-bit digest → first line per example.

Examples are counted one block of lines at a time (`ExampleCounter` into a block's `ExampleTotals`), possibly in a
worker process, and the blocks' totals are then merged in line order: every total is a sum, a maximum or the first
few of something, so merging gives what one pass over the file gives. `duplicate_example` needs every earlier
line, so a block only notes each example's digest, and the merge (`duplicate_example`) decides.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable
from hashlib import sha1
from itertools import product
from typing import TYPE_CHECKING, Any

from lora_core.validation.tokens import TokenCounter

if TYPE_CHECKING:  # the report's models are imported where they are built, so worker processes never import them
    from lora_core.validation.blocks import BlockIssues
    from lora_core.validation.report import DatasetStats, Distribution

# A training message: (role, content, weight or None, is_training_target).
TrainingMessage = tuple[str, str, "int | None", bool]
AddIssue = Callable[..., None]

SAMPLE_COUNT = 3
SAMPLE_CONTENT_CHARS = 2000
# In the example digest, each message is its content's 64-bit digest XOR a constant for its (role, weight): what
# FORMAT.md compares (role, content and, for `messages`, weight; not whether a pair's assistant message is its
# target). One int per message, and a tuple of ints hashes the same in every process (a str does not). The
# constants are derived from their keys, so they are the same in every process too.
_MESSAGE_SALTS: dict[tuple[str, int | None], int] = {
    key: int.from_bytes(sha1(repr(key).encode()).digest()[:8], "little")
    for key in product(("system", "user", "assistant"), (None, 0, 1))
}
_SYSTEM_SALT = _MESSAGE_SALTS["system", None]
_USER_SALT = _MESSAGE_SALTS["user", None]
_ASSISTANT_SALT = _MESSAGE_SALTS["assistant", None]
_NO_TEXTS: list[str] = []
_NO_MESSAGES: list[TrainingMessage] = []


def distribution(tally: Counter[int]) -> Distribution:
    """Nearest-rank min/p50/p90/p99/max and bins [0,1), [1,2), [2,4), [4,8)… up to the bin holding the max."""
    from lora_core.validation.report import Distribution

    total = sum(tally.values())
    if total == 0:
        return Distribution()
    values = sorted(tally)
    # Nearest rank: the smallest value whose cumulative count reaches ceil(p/100 × N), computed in integers.
    ranks = {name: -(-p * total // 100) for name, p in (("p50", 50), ("p90", 90), ("p99", 99))}
    found: dict[str, int] = {}
    seen = 0
    for value in values:
        seen += tally[value]
        for name, rank in ranks.items():
            if name not in found and seen >= rank:
                found[name] = value
    bins = [0] * (values[-1].bit_length() + 1)  # value v > 0 falls in bin v.bit_length(): [2^(k-1), 2^k)
    for value, count in tally.items():
        bins[value.bit_length()] += count
    histogram: list[dict[str, int | None]] = []
    for index, count in enumerate(bins):
        low = 0 if index == 0 else 1 << (index - 1)
        high = None if index == len(bins) - 1 else 1 << index
        histogram.append({"from": low, "to": high, "count": count})
    return Distribution(
        min=values[0], p50=found["p50"], p90=found["p90"], p99=found["p99"], max=values[-1], histogram=histogram
    )


def _ratio(numerator: int, denominator: int) -> float | None:
    """numerator / denominator to 2 places; None when there is nothing to divide by, or when the quotient is past
    what a float holds (FORMAT.md bounds no turn_number: one of 10**400 makes total_turns that large)."""
    if not denominator:
        return None
    try:
        return round(numerator / denominator, 2)
    except OverflowError:
        return None


class ExampleTotals:
    """What the statistics need of a run of examples; mergeable, so blocks can be counted apart (and pickled)."""

    def __init__(self) -> None:
        self.examples = 0
        self.training_pairs = 0
        self.total_tokens = 0
        self.target_tokens = 0
        self.over_context_limit = 0
        self.role_counts: dict[str, int] = dict.fromkeys(("system", "user", "assistant"), 0)
        # Each example's tokens, in a list while a block is counted (an append is cheaper than a tally's update),
        # then tallied value → count when blocks are merged (`Counter.update` on a list runs in C).
        self.token_values: list[int] = []
        self.tokens_tally: Counter[int] = Counter()
        # conversation_id → its turns (pair: highest turn_number; conversation: largest user+assistant count).
        self.conversation_turns: dict[Hashable, int] = {}
        # Lines that are one conversation each (`messages`, and lines without a usable conversation_id): their turn
        # counts, listed and tallied like the tokens.
        self.line_turn_values: list[int] = []
        self.line_turns_tally: Counter[int] = Counter()
        self.samples: list[dict[str, Any]] = []

    def merge(self, later: ExampleTotals) -> None:
        """Add the totals of the examples that follow these ones in the file."""
        self.examples += later.examples
        self.training_pairs += later.training_pairs
        self.total_tokens += later.total_tokens
        self.target_tokens += later.target_tokens
        self.over_context_limit += later.over_context_limit
        for role, count in later.role_counts.items():
            self.role_counts[role] += count
        self.tokens_tally.update(later.token_values)
        self.tokens_tally.update(later.tokens_tally)
        turns_of = self.conversation_turns
        more = later.conversation_turns
        # A conversation usually lies in one block: only the ids both have need comparing; the rest are added in C.
        for key in turns_of.keys() & more.keys():
            if turns_of[key] > more[key]:
                more[key] = turns_of[key]
        turns_of.update(more)
        self.line_turns_tally.update(later.line_turn_values)
        self.line_turns_tally.update(later.line_turns_tally)
        if len(self.samples) < SAMPLE_COUNT:
            self.samples.extend(later.samples[: SAMPLE_COUNT - len(self.samples)])

    def build(self, context_limit: int) -> DatasetStats:
        from lora_core.validation.report import DatasetStats, MessagesPerRole

        self.tokens_tally.update(self.token_values)
        self.line_turns_tally.update(self.line_turn_values)
        self.token_values, self.line_turn_values = [], []
        turns_tally = Counter(self.conversation_turns.values()) + self.line_turns_tally
        conversations = len(self.conversation_turns) + sum(self.line_turns_tally.values())
        total_turns = sum(self.conversation_turns.values()) + sum(v * n for v, n in self.line_turns_tally.items())
        return DatasetStats(
            total_examples=self.examples,
            total_conversations=conversations,
            total_training_pairs=self.training_pairs,
            total_turns=total_turns,
            total_tokens=self.total_tokens,
            total_target_tokens=self.target_tokens,
            avg_turns_per_conversation=_ratio(total_turns, conversations),
            avg_tokens_per_pair=_ratio(self.total_tokens, self.training_pairs),
            tokens_per_example=distribution(self.tokens_tally),
            turns_per_conversation=distribution(turns_tally),
            messages_per_role=MessagesPerRole(
                system=self.role_counts["system"],
                user=self.role_counts["user"],
                assistant=self.role_counts["assistant"],
            ),
            over_context_limit=self.over_context_limit,
            context_limit=context_limit,
        )


class ExampleCounter:
    """Takes every example of a block of lines, in line order, into `totals`; raises `over_context_limit`, and notes
    each example's digest in `issues` for the merge to raise `duplicate_example`."""

    def __init__(
        self, count_tokens: TokenCounter, context_limit: int, issues: BlockIssues, totals: ExampleTotals
    ) -> None:
        self.count_tokens = count_tokens
        self.context_limit = context_limit
        self.issues = issues
        self.totals = totals
        # The previous example's messages, with, per leading run of them, what `add_example` summed: `_sums[i]` is
        # (tokens, target tokens, targets, system, user, assistant) of its first i messages, `_parts[i]` the salted
        # digest of message i. A pair export repeats the previous line's messages (its history grows by one turn),
        # and comparing a message with the one before (a memcmp) costs a fraction of looking its text up.
        self._previous: list[TrainingMessage] = []
        self._sums: list[tuple[int, int, int, int, int, int]] = [(0, 0, 0, 0, 0, 0)]
        self._parts: list[int] = []
        # The same for `add_pair`, whose messages are texts with roles given by their places: the previous pair's
        # texts, their (tokens, digest), the tokens of their first i, and their salted digests.
        self._pair_texts: list[str] = []
        self._pair_found: list[tuple[int, int]] = []
        self._pair_tokens: list[int] = [0]
        self._pair_parts: list[int] = []

    def add_example(
        self,
        line: int,
        messages: list[TrainingMessage],
        conversation_key: Hashable | None,
        turns: int,
    ) -> None:
        """Count one example. `conversation_key` None means the line is a conversation of its own (`messages`, or
        a line without a usable conversation_id)."""
        self._pair_texts = _NO_TEXTS
        previous = self._previous
        same = 0  # the leading messages equal to the previous example's
        limit = min(len(messages), len(previous))
        while same < limit and messages[same] == previous[same]:
            same += 1
        sums = self._sums[: same + 1]
        digest_parts = self._parts[:same]
        tokens, target_tokens, targets, system, user, assistant = sums[-1]
        count = self.count_tokens.count
        salts = _MESSAGE_SALTS
        append_sums = sums.append
        append_part = digest_parts.append
        for index in range(same, len(messages)):
            role, content, weight, is_target = messages[index]
            found = count(content)
            message_tokens = found[0]
            tokens += message_tokens
            if role == "assistant":
                assistant += 1
            elif role == "user":
                user += 1
            else:
                system += 1
            if is_target:
                targets += 1
                target_tokens += message_tokens
            append_part(found[1] ^ salts[role, weight])
            append_sums((tokens, target_tokens, targets, system, user, assistant))
        self._previous, self._sums, self._parts = messages, sums, digest_parts
        self._take(line, (system, user, assistant), targets, tokens, target_tokens, conversation_key, turns)
        # An example with no training message has nothing to duplicate.
        if messages:
            self.issues.note_example(line, hash(tuple(digest_parts)))
        if len(self.totals.samples) < SAMPLE_COUNT:
            sample_messages = []
            for role, content, weight, _is_target in messages:
                message: dict[str, Any] = {"role": role, "content": content[:SAMPLE_CONTENT_CHARS]}
                if weight is not None:
                    message["weight"] = weight
                sample_messages.append(message)
            self.totals.samples.append({"line": line, "messages": sample_messages})

    def add_pair(self, line: int, texts: list[str], conversation_key: str, turns: int) -> None:
        """`add_example` for a usual pair line (rules.RecordRules.usual_pair), with the same result: `texts` are its
        messages' texts, whose roles follow from their places: the system prompt, the history alternating from a
        user message and ending with an assistant one, the user input, and the target (the only training target).

        No message tuples to build and compare, and the role counts follow from the length.
        """
        self._previous = _NO_MESSAGES
        previous = self._pair_texts
        count = len(texts)
        before = len(previous)
        # Places before both targets hold the same roles in both examples; the last places are both the target
        # only when the examples are as long.
        limit = min(count, before) - 1
        same = 0
        while same < limit and texts[same] == previous[same]:
            same += 1
        if same == limit and count == before and texts[same] == previous[same]:
            same += 1
        found_before = self._pair_found
        found = found_before[:same]
        sums = self._pair_tokens[: same + 1]
        digest_parts = self._pair_parts[:same]
        tokens = sums[-1]
        count_tokens = self.count_tokens.count
        last = count - 1
        for index in range(same, count):
            text = texts[index]
            # A text that was there before (as the target or not) is not counted again.
            counted = found_before[index] if index < before and text == previous[index] else count_tokens(text)
            found.append(counted)
            tokens += counted[0]
            sums.append(tokens)
            # Place 0 holds the system prompt, odd places user messages, even ones assistant messages (the target last).
            salt = _USER_SALT if index & 1 else _ASSISTANT_SALT if index else _SYSTEM_SALT
            digest_parts.append(counted[1] ^ salt)
        self._pair_texts, self._pair_found, self._pair_tokens, self._pair_parts = texts, found, sums, digest_parts
        each = (count - 1) // 2  # user messages, and as many assistant ones: half the history, the input, the target
        self._take(line, (1, each, each), 1, tokens, found[last][0], conversation_key, turns)
        self.issues.note_example(line, hash(tuple(digest_parts)))
        if len(self.totals.samples) < SAMPLE_COUNT:
            roles = ["system", *(("user", "assistant") * each)]
            sample_messages = [
                {"role": role, "content": text[:SAMPLE_CONTENT_CHARS]} for role, text in zip(roles, texts, strict=True)
            ]
            self.totals.samples.append({"line": line, "messages": sample_messages})

    def _take(
        self,
        line: int,
        roles: tuple[int, int, int],
        targets: int,
        tokens: int,
        target_tokens: int,
        conversation_key: Hashable | None,
        turns: int,
    ) -> None:
        """Add a counted example to the totals: its (system, user, assistant) messages, training targets, tokens,
        and turns; raise `over_context_limit`.

        The example's digest is noted after this (the merge raises `duplicate_example`): a 64-bit hash of its
        messages' digests, salted by role, weight and target (ints hash alike in every process), which keeps memory
        per example bounded. Two different examples share it with probability ~n²/2^64 (3e-8 for a million
        examples), and the cost is a warning.
        """
        totals = self.totals
        totals.examples += 1
        role_counts = totals.role_counts
        role_counts["system"] += roles[0]
        role_counts["user"] += roles[1]
        role_counts["assistant"] += roles[2]
        totals.training_pairs += targets
        totals.target_tokens += target_tokens
        totals.total_tokens += tokens
        totals.token_values.append(tokens)
        if conversation_key is None:
            totals.line_turn_values.append(turns)
        elif turns > totals.conversation_turns.get(conversation_key, -1):
            totals.conversation_turns[conversation_key] = turns
        if tokens > self.context_limit:
            totals.over_context_limit += 1
            self.issues.add(
                "over_context_limit",
                line,
                None,
                f"This example has about {tokens:,} tokens, more than the context limit of {self.context_limit:,}; "
                "the trainer will cut off its end, usually the assistant answer it should learn from.",
                "Shorten the history or the system prompt, split the conversation into shorter examples, or train "
                "with a longer maximum sequence length.",
            )


def duplicate_example(add: AddIssue, line: int, first: int) -> None:
    """`duplicate_example` on `line`, whose training messages equal those of the file's `first` line."""
    add(
        "duplicate_example",
        line,
        None,
        f"This example's training messages are identical to line {first}'s; duplicates make the model overfit to them.",
        f"Remove this line or line {first}, unless you mean to weight this example double.",
    )
