"""Dataset statistics, `duplicate_example`, `over_context_limit` and samples, accumulated one example at a time.

Memory grows with the number of distinct values, not the number of examples, wherever that is possible: token and
turn counts are kept as value → count tallies (exact nearest-rank percentiles come from the tally), conversations as
id → turns, and duplicate detection as a 64-bit hash → first line per example.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from typing import Any

from lora_core.validation.report import DatasetStats, Distribution, IssueCollector, MessagesPerRole
from lora_core.validation.tokens import TokenCounter

# A training message: (role, content, weight or None, is_training_target).
TrainingMessage = tuple[str, str, "int | None", bool]

SAMPLE_COUNT = 3
SAMPLE_CONTENT_CHARS = 2000


def distribution(tally: Counter[int]) -> Distribution:
    """Nearest-rank min/p50/p90/p99/max and bins [0,1), [1,2), [2,4), [4,8)… up to the bin holding the max."""
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
    return round(numerator / denominator, 2) if denominator else None


class StatsAccumulator:
    """Takes every example of the file's shape, in line order, and raises the dataset-wide warnings as it goes."""

    def __init__(self, context_limit: int, issues: IssueCollector) -> None:
        self.context_limit = context_limit
        self.issues = issues
        self.count_tokens = TokenCounter()
        self.examples = 0
        self.training_pairs = 0
        self.total_tokens = 0
        self.target_tokens = 0
        self.over_context_limit = 0
        self.role_counts: dict[str, int] = dict.fromkeys(("system", "user", "assistant"), 0)
        self.tokens_tally: Counter[int] = Counter()
        # Conversation key → its turns (pair: highest turn_number; conversation: largest user+assistant count).
        self.conversation_turns: dict[Hashable, int] = {}
        # `messages` lines are one conversation each: their turn counts are tallied, not keyed.
        self.line_turns_tally: Counter[int] = Counter()
        self._first_line_of_example: dict[int, int] = {}
        self.samples: list[dict[str, Any]] = []

    def add_example(
        self,
        line: int,
        messages: list[TrainingMessage],
        conversation_key: Hashable | None,
        turns: int,
    ) -> None:
        """Count one example. `conversation_key` None means the line is a conversation of its own (`messages`)."""
        self.examples += 1
        known = self.count_tokens.known.get
        count_new = self.count_tokens.count_new
        role_counts = self.role_counts
        tokens = 0
        for role, content, _weight, is_target in messages:
            message_tokens = known(content)
            if message_tokens is None:
                message_tokens = count_new(content)
            tokens += message_tokens
            role_counts[role] += 1
            if is_target:
                self.training_pairs += 1
                self.target_tokens += message_tokens
        self.total_tokens += tokens
        tally = self.tokens_tally
        tally[tokens] = tally.get(tokens, 0) + 1  # Counter's += calls a Python-level __missing__ for new keys

        if conversation_key is None:
            self.line_turns_tally[turns] = self.line_turns_tally.get(turns, 0) + 1
        elif turns > self.conversation_turns.get(conversation_key, -1):
            self.conversation_turns[conversation_key] = turns

        if tokens > self.context_limit:
            self.over_context_limit += 1
            self.issues.add(
                "over_context_limit",
                line,
                None,
                f"This example has about {tokens:,} tokens, more than the context limit of {self.context_limit:,}; "
                "the trainer will cut off its end, usually the assistant answer it should learn from.",
                "Shorten the history or the system prompt, split the conversation into shorter examples, or train "
                "with a longer maximum sequence length.",
            )

        # An example with no training message has nothing to duplicate; a 64-bit hash of the messages (str caches
        # its hash, already computed by the token memo) keeps memory per example bounded. Two different examples
        # share a hash with probability ~n²/2^64 (3e-8 for a million examples), and the cost is a warning.
        if messages:
            first = self._first_line_of_example.setdefault(hash(tuple(messages)), line)
            if first != line:
                self.issues.add(
                    "duplicate_example",
                    line,
                    None,
                    f"This example's training messages are identical to line {first}'s; duplicates make the model "
                    "overfit to them.",
                    f"Remove this line or line {first}, unless you mean to weight this example double.",
                )

        if len(self.samples) < SAMPLE_COUNT:
            sample_messages = []
            for role, content, weight, _is_target in messages:
                message: dict[str, Any] = {"role": role, "content": content[:SAMPLE_CONTENT_CHARS]}
                if weight is not None:
                    message["weight"] = weight
                sample_messages.append(message)
            self.samples.append({"line": line, "messages": sample_messages})

    def build(self) -> DatasetStats:
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
            context_limit=self.context_limit,
        )
