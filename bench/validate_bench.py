"""Validator speed and memory against two yardsticks, on a synthetic BrightRun v4 pair-shape file.

    .venv/bin/python bench/validate_bench.py --size-mb 500 [--repeat N] [--skip-e02] [--skip-s3] [--keep DIR]

Measures, each in its own child process so peak RSS is that measurement's alone:
  1. orjson     bare `orjson.loads` per line (`for line in file`, binary): the yardstick
  2. e02        the E02 spec's way: read() the whole text, splitlines(), json.loads per line
  3. local      the validator on the local file, as validate_file runs it in production (default limits, worker
                processes for inputs over 32 MiB: LORA_VALIDATION_WORKERS, else up to 2; their forkserver started
                before the clock, as the sweep starts it when it starts)
  4. s3         the validator on an object of a moto server, as the sweep runs it (open_stream, validate_download):
                one GET, its size from the response, streamed into a spool file that the workers read spans of
                as soon as the download has passed them; moto runs in yet another process (it holds the whole
                object in memory; that memory is not the validator's)
  5. orjson_s3  bare `orjson.loads` per line over the same object of the same moto server, one GET streamed in
                1 MiB chunks: what reading the object from S3 costs before any validation (moto copies the whole
                object before its first byte and serves it from a process on the same cores)
The measurements run in rounds, each mode once per round (`--repeat` rounds): this machine's speed drifts by 10-20%
within a minute, and a yardstick measured only first made the ratios drift with it (an S3 ratio read 0.54 in one run
and 0.39 in the next). The fastest run of each mode counts, and each round's own ratios are printed as well. The
moto server, and the upload into it, live in their own process: Linux carries a parent's peak RSS into its
children, so boto3 in the bench's process would have added its ~60 MiB to every measurement.
Targets: validator MB/s ≥ 0.50 × orjson's (the file yardstick, 1), and validator peak RSS ≤ 200 MiB. The S3 line
also gives its ratio to orjson_s3, for context; PASS and FAIL are against the file yardstick only. The peak RSS of
the validating process and the sum of its workers' peaks are printed apart, and together.

The synthetic file is shaped like the BrightRun exporter's output (see /work/shared/samples/EQ-12...): one line per
assistant turn, each repeating the system prompt and the whole history so far, the last user message both in the
history and in `current_user_input`, and metadata objects with v4 scaffolding; text is mostly ASCII with some
typographic quotes, dashes, accented words and emoji in 30% of the messages (EQ-12: 24%).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MIB = 1024 * 1024
RATIO_TARGET = 0.50
RSS_TARGET_MIB = 200

_WORDS = [
    "money",
    "budget",
    "savings",
    "plan",
    "mortgage",
    "retirement",
    "feel",
    "worried",
    "anxious",
    "about",
    "the",
    "and",
    "to",
    "of",
    "a",
    "my",
    "I",
    "you",
    "we",
    "it",
    "is",
    "that",
    "this",
    "for",
    "with",
    "not",
    "but",
    "just",
    "really",
    "think",
    "know",
    "want",
    "need",
    "pay",
    "debt",
    "credit",
    "card",
    "interest",
    "rate",
    "month",
    "year",
    "income",
    "spending",
    "account",
    "emergency",
    "fund",
    "goal",
    "step",
    "together",
    "okay",
    "understand",
    "completely",
    "normal",
    "feeling",
    "many",
    "people",
    "struggle",
    "first",
    "let's",
    "look",
    "at",
    "numbers",
    "options",
    "small",
    "progress",
    "matters",
    "proud",
    "of",
    "you",
    "how",
    "does",
    "sound",
]
# In the EQ-12 export a quarter of the messages hold a non-ASCII character (an em dash, an arrow).
NON_ASCII_SHARE = 0.3
_FANCY = ["“really”", "—", "café", "naïve", "résumé", "€500", "…", "’s", "🙂", "→", "Zoë", "façade"]
_PERSONAS = ["overwhelmed_avoider", "anxious_planner", "pragmatic_optimist", "confident_delegator"]
_ARCS = ["shame_to_confidence", "anxiety_to_clarity", "crisis_to_referral", "confusion_to_understanding"]
_TOPICS = ["mortgage_payoff_strategy", "emergency_fund", "retirement_catch_up", "credit_card_debt", "budgeting"]


def _text(rng: random.Random, low: int, high: int) -> str:
    words = rng.choices(_WORDS, k=rng.randint(low, high))
    if rng.random() < NON_ASCII_SHARE:
        for _ in range(rng.randint(1, 3)):
            words[rng.randrange(len(words))] = rng.choice(_FANCY)
    text = " ".join(words)
    if len(words) > 60 and rng.random() < 0.5:  # paragraphs, as assistants write them
        cut = text.find(" ", len(text) // 2)
        text = text[:cut] + "\n\n" + text[cut + 1 :]
    return text[0].upper() + text[1:] + "."


def generate(path: Path, size_mb: int, seed: int = 7) -> int:
    """Write a synthetic v4 pair-shape file of about `size_mb` MB; returns the number of lines."""
    rng = random.Random(seed)
    system_prompts = [_text(rng, 90, 140) for _ in range(4)]
    target = size_mb * 1_000_000
    written = lines = conversation = 0
    with open(path, "wb") as out:
        out.write(orjson.dumps({"_meta": {"file_name": "synthetic", "total_pairs": 0, "version": "4.0.0"}}) + b"\n")
        while written < target:
            conversation += 1
            conversation_id = f"{conversation:08x}-synthetic"
            system_prompt = rng.choice(system_prompts)
            metadata = {
                "client_persona": "Synthetic Persona - " + _text(rng, 2, 4),
                "client_background": _text(rng, 30, 60),
                "persona_archetype": rng.choice(_PERSONAS),
                "emotional_arc": "Synthetic → Arc",
                "emotional_arc_key": rng.choice(_ARCS),
                "training_topic": "Synthetic Topic",
                "training_topic_key": rng.choice(_TOPICS),
            }
            history: list[dict[str, Any]] = []
            for turn in range(1, rng.randint(2, 6)):  # 1 to 5 assistant turns: 1 to 9 history entries
                user = _text(rng, 15, 90)
                history.append({"turn": 2 * turn - 1, "role": "user", "content": user, "emotional_state": {"p": 0.5}})
                answer = _text(rng, 80, 260)
                record = {
                    "id": f"fp_{conversation_id}_turn{2 * turn}",
                    "conversation_id": conversation_id,
                    "turn_number": 2 * turn,
                    "conversation_metadata": metadata,
                    "system_prompt": system_prompt,
                    "conversation_history": history,
                    "current_user_input": user,
                    "emotional_context": {"detected_emotions": {"primary": "worry", "primary_confidence": 0.8}},
                    "target_response": answer,
                    "training_metadata": {"quality_score": round(rng.uniform(3, 5), 1), "human_reviewed": True},
                }
                data = orjson.dumps(record) + b"\n"
                out.write(data)
                written += len(data)
                lines += 1
                history.append({"turn": 2 * turn, "role": "assistant", "content": answer})
    return lines


# -- measurements, each run in a child process ---------------------------------------------------------------------


def _measure(mode: str, target: str) -> dict[str, Any]:
    """Time one way of reading `target`; imports and client set-up happen before the clock starts."""
    extra: dict[str, Any] = {}
    if mode in ("local", "s3"):
        from lora_core.settings import Settings
        from lora_core.validation import ValidationLimits
        from lora_core.validation.validator import run_file_validation

        # As production runs it: the settings' limits, workers included (LORA_VALIDATION_WORKERS, else up to 2),
        # and the workers' forkserver already running: the sweep starts it when it starts (start_sweep,
        # run_worker), and multiprocessing keeps it for the process's life.
        limits = ValidationLimits.from_settings(Settings())
        if limits.workers > 1:
            from lora_core.validation.parallel import start_worker_server

            start_worker_server()
    if mode in ("s3", "orjson_s3"):
        from lora_core.storage import S3Store
        from lora_core.validation.validator import run_download_validation

        endpoint, bucket, key = target.split("|")
        os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
        store = S3Store(bucket, endpoint_url=endpoint, region="us-east-1", upload_ttl=60, download_ttl=60)
    started = time.perf_counter()
    if mode == "orjson":
        count = 0
        with open(target, "rb") as handle:
            for line in handle:
                orjson.loads(line)
                count += 1
        extra["lines"] = count
    elif mode == "orjson_s3":
        stream = store.open_stream(key)  # one GET, as the validator's
        count = 0
        rest = b""
        for chunk in stream.chunks:
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            for line in lines:
                orjson.loads(line)
            count += len(lines)
        if rest:
            orjson.loads(rest)
            count += 1
        extra["lines"] = count
    elif mode == "e02":
        with open(target, encoding="utf-8") as handle:
            text = handle.read()
        count = 0
        for line in text.splitlines():
            if line.strip():
                json.loads(line)
                count += 1
        extra["lines"] = count
    elif mode in ("local", "s3"):
        # What validate_file and validate_download run, with the report of how it ran (workers and their memory).
        if mode == "local":
            # What validate_file runs (past its upload-limit check): the workers read their spans of the file.
            report, info = run_file_validation(target, limits=limits)
        else:
            stream = store.open_stream(key)  # one GET, as the sweep opens it: the size comes with the bytes
            spool_dir = Path(tempfile.gettempdir()) / "lora-bench-spool"
            report, info = run_download_validation(stream.chunks, stream.size, spool_dir, limits=limits)
        extra = {"valid": report.valid, "pairs": report.stats.total_training_pairs, "errors": report.error_count}
        # Each worker reports its own peak RSS; they run at once, so their sum is what the validation adds.
        extra["workers"] = info.workers
        extra["workers_peak_rss_mib"] = sum(info.worker_peak_rss_kib.values()) / 1024
    else:
        raise SystemExit(f"unknown measurement {mode}")
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"seconds": seconds, "peak_rss_mib": peak_kib / 1024, **extra}


def _serve_moto(path: str) -> None:
    """Run a moto server until stdin closes, holding the file at `path` as bench/dataset.jsonl; print its endpoint
    once the object is there. The upload happens here, not in the bench's own process: a child's peak RSS counts
    its parent's at the fork (Linux keeps it across exec), and boto3 would have added ~60 MiB to every child's."""
    import boto3
    from botocore.config import Config
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(request_checksum_calculation="when_required", response_checksum_validation="when_required"),
    )
    client.create_bucket(Bucket="bench")
    client.upload_file(path, "bench", "dataset.jsonl")
    print(endpoint, flush=True)
    sys.stdin.read()
    server.stop()


def _child(mode: str, target: str) -> dict[str, Any]:
    result = subprocess.run(
        # From the project folder, as scripts/run.sh runs the app.
        [sys.executable, __file__, "--measure", mode, target],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if result.returncode != 0:
        return {"failed": (result.stderr or result.stdout).strip().splitlines()[-1:]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest run, with the highest peak RSS of all runs (memory is not allowed to get lucky)."""
    failed = [run for run in runs if "failed" in run]
    if failed:
        return failed[0]
    best = dict(min(runs, key=lambda run: run["seconds"]))
    best["peak_rss_mib"] = max(run["peak_rss_mib"] for run in runs)
    if any("workers_peak_rss_mib" in run for run in runs):
        best["workers_peak_rss_mib"] = max(run.get("workers_peak_rss_mib", 0) for run in runs)
    return best


@contextmanager
def _moto_object(path: Path) -> Iterator[str]:
    """A moto server in its own process holding `path` as an object; yields the measurement target of it."""
    moto = subprocess.Popen(
        [sys.executable, __file__, "--serve-moto", str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        endpoint = moto.stdout.readline().strip() if moto.stdout else ""
        if not endpoint:
            raise SystemExit("the moto server did not start")
        yield f"{endpoint}|bench|dataset.jsonl"
    finally:
        if moto.stdin:
            moto.stdin.close()
        try:
            moto.wait(timeout=30)
        except subprocess.TimeoutExpired:
            moto.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--skip-e02", action="store_true", help="skip the E02 yardstick (it needs ~8x the file in RAM)")
    parser.add_argument("--skip-s3", action="store_true")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement; the fastest counts")
    parser.add_argument("--keep", type=Path, help="write the synthetic file into this folder and keep it")
    parser.add_argument("--measure", nargs=2, metavar=("MODE", "TARGET"), help=argparse.SUPPRESS)
    parser.add_argument("--serve-moto", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(_measure(*args.measure)))
        return
    if args.serve_moto:
        _serve_moto(args.serve_moto)
        return

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"synthetic-v4-pairs-{args.size_mb}mb.jsonl"
        if not path.exists():
            started = time.perf_counter()
            lines = generate(path, args.size_mb)
            print(f"generated {path.name}: {lines:,} lines in {time.perf_counter() - started:.0f} s", flush=True)
        size = path.stat().st_size
        print(f"file: {size / 1e6:,.0f} MB ({size / MIB:,.0f} MiB)\n", flush=True)

        plan = [("orjson", "bare orjson.loads per line (yardstick)"), ("e02", "E02 spec: read+splitlines+json")]
        plan += [("local", "validator, local file")]
        plan += [("orjson_s3", "bare orjson.loads per line, S3 (moto)"), ("s3", "validator, S3 object (moto)")]
        plan = [
            (mode, label)
            for mode, label in plan
            if not (mode == "e02" and args.skip_e02) and not (mode in ("s3", "orjson_s3") and args.skip_s3)
        ]
        # Rounds, each measuring every mode once: the machine's speed drifts (a VM's neighbours, other work), and a
        # yardstick measured only at the start would make every ratio drift with it. The fastest run of each mode
        # counts, and each round's own ratios are printed too.
        runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode, _ in plan}
        with contextlib.ExitStack() as stack:
            s3_target = "" if args.skip_s3 else stack.enter_context(_moto_object(path))
            for _ in range(args.repeat):
                for mode, _label in plan:
                    runs[mode].append(_child(mode, s3_target if mode in ("s3", "orjson_s3") else str(path)))
        results: dict[str, dict[str, Any]] = {}
        for mode, label in plan:
            result = _best(runs[mode])
            results[mode] = result
            if "failed" in result:
                print(f"{label:<40} FAILED: {result['failed']}", flush=True)
            else:
                result["mb_per_s"] = size / 1e6 / result["seconds"]
                shown = ("seconds", "peak_rss_mib", "mb_per_s", "workers_peak_rss_mib")
                extra = {k: v for k, v in result.items() if k not in shown}
                workers_rss = result.get("workers_peak_rss_mib")
                in_workers = f" (+{workers_rss:.0f} MiB in workers)" if workers_rss else ""
                print(
                    f"{label:<40} {result['mb_per_s']:8.1f} MB/s {result['peak_rss_mib']:8.0f} MiB peak RSS"
                    f"{in_workers}  {extra}",
                    flush=True,
                )

        print()
        yard = results.get("orjson", {}).get("mb_per_s")
        e02 = results.get("e02", {}).get("mb_per_s")
        for mode in ("local", "s3"):
            result = results.get(mode)
            if not result or "failed" in result:
                continue
            ratio = result["mb_per_s"] / yard if yard else float("nan")
            speed_ok = "PASS" if ratio >= RATIO_TARGET else "FAIL"
            rss_ok = "PASS" if result["peak_rss_mib"] <= RSS_TARGET_MIB else "FAIL"
            versus_e02 = f", {result['mb_per_s'] / e02:.1f}x E02" if e02 else ""
            yard_s3 = results.get("orjson_s3", {}).get("mb_per_s")
            if mode == "s3" and yard_s3:
                versus_e02 += f", {result['mb_per_s'] / yard_s3:.2f}x orjson over the same S3 stream"
            workers_rss = result.get("workers_peak_rss_mib", 0)
            rounds = [
                f"{size / 1e6 / run['seconds'] / (size / 1e6 / base['seconds']):.2f}"
                for run, base in zip(runs[mode], runs["orjson"], strict=True)
                if "failed" not in run and "failed" not in base
            ]
            print(
                f"{mode:<6} speed {ratio:.2f}x orjson (target ≥ {RATIO_TARGET:.2f}) {speed_ok}{versus_e02}; "
                f"round by round {', '.join(rounds)}x; "
                f"peak RSS {result['peak_rss_mib']:.0f} MiB (target ≤ {RSS_TARGET_MIB}) {rss_ok}; "
                f"{result.get('workers', 0)} workers, their peak RSS summed {workers_rss:.0f} MiB, "
                f"all together {result['peak_rss_mib'] + workers_rss:.0f} MiB"
            )


if __name__ == "__main__":
    main()
