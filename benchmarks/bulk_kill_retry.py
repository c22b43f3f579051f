"""
Kill and retry: a bulk send SIGKILLed in the middle of its sends, retried, and finished.

``OctopodsBulkSendOperator`` (``wait_for_delivery=False``) sends ``--recipients`` (2,000) SMS in
a child process (``python -m benchmarks.bulk_kill_retry --child``), against a simulator in its
own process limited to ``--limit`` (50) requests/s per key, with the connection extra
``max_requests_per_second`` = ``--rate`` (45). Its ``task_state_store`` is durable across
processes: a JSON file with the accessor's methods (``get``, ``set``, ``delete``, ``clear``),
every write to a temporary file then ``os.replace`` (atomic: a kill leaves the old file or the
new one, never half of one). The harness:

1. starts a try and waits for its first send (the simulator's ``messages`` grows);
2. waits a seeded random delay, ``uniform(0.1, 0.9) x`` the time the remaining sends take at
   the rate ``/`` the kills left, so each kill lands in the middle of the sends and leaves sends
   for the next try;
3. SIGKILLs the child (nothing runs after it: no ``finally``, no ledger write), waits 0.5 s for
   the simulator to answer what reached it, reads the ledger file;
4. starts the next try, same ``max_tries`` (a retry, not a Clear), ``--kills`` (3) times; the
   last try runs to completion and writes every recipient's outcome (through the operator's
   ``_write_results``, the hook the SQL operator's ``results_table`` uses).

Then it checks, with the simulator's record of every message's phone: no phone got two messages;
every recipient is ``sent`` (its message id is a message to its phone) or ``unconfirmed``; the
unconfirmed are at most one ``window`` per kill (the window marked ``sending`` in the ledger when
the kill landed). Of the unconfirmed, it reports how many reached Octopods (a message exists:
sent, not confirmed) and how many did not (nothing sent: ``resend_unconfirmed=True`` would send
them, at the risk of a second message to the others).

The named baseline, in the same run (skip it with ``--no-baseline``): the same kills, the same
seed, with no task state store (``context`` without ``task_state_store``: Airflow before 3.3, or
any loop without a ledger): every retry sends every recipient again.

Exit 1 when a target is missed. Run from the repository root::

    .venv/bin/python -m benchmarks.bulk_kill_retry                  # about 3 minutes
    .venv/bin/python -m benchmarks.bulk_kill_retry --recipients 60 --rate 50 --kills 1 --window 10
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from benchmarks._common import OCTOPODS_CONN_ID, ROOT, Machine, RecordingSimulatorProcess
from benchmarks.bulk_send import child_env, make_rows, valid_phones

#: The ledger's keys (``airflow_provider_octopods.utils.ledger``), read to tell what was in flight.
BULK_KEY = "octopods_bulk"


class JsonFileStore:
    """
    A task state store in one JSON file, durable across processes, with the accessor's methods.

    Every write reads the file, changes one key and replaces the file atomically: a temporary
    file in the same directory, flushed and fsynced, then ``os.replace``.

    :param path: the file (created on the first write).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.writes = 0
        self.largest = 0

    def read(self) -> dict[str, Any]:
        """Every key and value."""
        try:
            return dict(json.loads(self.path.read_text()))
        except FileNotFoundError:
            return {}

    def _write(self, data: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as out:
            json.dump(data, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
        self.writes += 1

    def get(self, key: str, default: Any = None) -> Any:
        return self.read().get(key, default)

    def set(self, key: str, value: Any, **_: Any) -> None:
        if value is None:
            raise ValueError("Cannot set value as None")
        self.largest = max(self.largest, len(json.dumps(value)))
        data = self.read()
        data[key] = value
        self._write(data)

    def delete(self, key: str) -> None:
        data = self.read()
        if data.pop(key, None) is not None:
            self._write(data)

    def clear(self) -> None:
        self._write({})


def in_flight(values: dict[str, Any]) -> dict[int, list[list[str]]]:
    """The chunks of the ledger marked ``sending`` and never recorded: ``{number: [[key, phone], ...]}``."""
    chunks: dict[int, list[list[str]]] = {}
    for key, value in values.items():
        suffix = key[len(BULK_KEY) + 1 :]
        if key.startswith(f"{BULK_KEY}_") and suffix.isdigit() and "sending" in value:
            chunks[int(suffix)] = value["sending"]
    return chunks


# -- the child -------------------------------------------------------------------------------


def _run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """One try of the bulk send; write every outcome to ``spec["outcomes"]``; return the report."""
    from airflow_provider_octopods.operators.octopods import OctopodsBulkSendOperator

    rows = make_rows(valid_phones(int(spec["n"])))

    class Recorded(OctopodsBulkSendOperator):
        def _write_results(self, context: Any, outcomes: Any) -> None:
            rows = [[o.key, o.phone, o.state, o.message_id, o.reason] for o in outcomes]
            Path(spec["outcomes"]).write_text(json.dumps(rows))

    task = Recorded(
        task_id="bulk",
        messages=rows,
        wait_for_delivery=False,
        window=int(spec["window"]),
        octopods_conn_id=OCTOPODS_CONN_ID,
    )
    context: Any = {"ti": SimpleNamespace(max_tries=int(spec["max_tries"]))}
    if spec.get("store"):
        context["task_state_store"] = JsonFileStore(spec["store"])
    report = task.execute(context)
    return {"counts": report["counts"], "recipients": report["recipients"]}


# -- the parent ------------------------------------------------------------------------------


def _messages(sim: RecordingSimulatorProcess) -> int:
    return int(sim.admin.stats()["messages"])


def run_side(side: str, args: argparse.Namespace, phones: list[str]) -> dict[str, Any]:
    """
    Run the tries of one side (``ledger`` or ``no-ledger``) against a fresh simulator.

    :param side: ``ledger`` (the JSON-file store) or ``no-ledger`` (no store).
    :param args: the command line.
    :param phones: the recipients.
    """
    rng = random.Random(args.seed)
    pace = args.rate or args.limit or 100.0
    limit = ["--rate-limit", str(args.limit)] if args.limit else []
    n = len(phones)
    kills: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="octopods-kill-") as tmp,
        RecordingSimulatorProcess(args=limit) as sim,
    ):
        store_path, outcomes_path = Path(tmp) / "task_state_store.json", Path(tmp) / "outcomes.json"
        store = JsonFileStore(store_path)
        spec = {
            "n": n,
            "window": args.window,
            "max_tries": args.kills,  # the same on every try: a retry, not a Clear
            "store": str(store_path) if side == "ledger" else None,
            "outcomes": str(outcomes_path),
        }
        env = child_env(sim.url, args.rate)
        started = time.monotonic()
        report: dict[str, Any] | None = None
        for attempt in range(args.kills + 1):
            before = _messages(sim)
            with tempfile.TemporaryFile("w+") as log:
                child = subprocess.Popen(
                    [sys.executable, "-m", "benchmarks.bulk_kill_retry", "--child"],
                    cwd=ROOT,
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    text=True,
                )
                if attempt == args.kills:  # the last try runs to completion
                    try:
                        out, _ = child.communicate(json.dumps(spec), timeout=args.timeout)
                    finally:
                        if child.poll() is None:
                            child.kill()
                            child.wait()
                    if child.returncode != 0:
                        log.seek(0)
                        raise RuntimeError(
                            f"The last try failed (exit {child.returncode}):\n{log.read()[-3000:]}"
                        )
                    report = json.loads(out.strip().splitlines()[-1])
                    break
                assert child.stdin is not None and child.stdout is not None
                child.stdin.write(json.dumps(spec))
                child.stdin.close()
                deadline = time.monotonic() + args.timeout
                first = before
                while child.poll() is None and time.monotonic() < deadline:
                    first = _messages(sim)
                    if first > before:
                        break
                    time.sleep(0.02)
                seen_first = time.monotonic()
                sent_so_far = first if side == "ledger" else first - before
                delay = rng.uniform(0.1, 0.9) * max(n - sent_so_far, 1) / pace / (args.kills - attempt)
                time.sleep(delay)
                alive = child.poll() is None
                killed_after = time.monotonic() - seen_first
                if alive:
                    os.kill(child.pid, signal.SIGKILL)
                child.wait()
                child.stdout.close()
            at_kill = _messages(sim)
            time.sleep(0.5)  # what reached the simulator before the kill is answered
            after = _messages(sim)
            flying = in_flight(store.read() if side == "ledger" else {})
            earlier = {number for kill in kills for number in kill["chunks"]}
            new = {number: chunk for number, chunk in flying.items() if number not in earlier}
            kills.append(
                {
                    "try": attempt + 1,
                    "killed": alive,
                    "delay_s": killed_after,
                    "messages_before": before,
                    "messages_at_kill": at_kill,
                    "messages_after": after,
                    "chunks": sorted(new),
                    "in_flight": [entry for chunk in new.values() for entry in chunk],
                }
            )
        wall = time.monotonic() - started
        time.sleep(0.2)
        record = sim.record()
        outcomes = json.loads(outcomes_path.read_text())
        largest = max((len(json.dumps(v)) for v in store.read().values()), default=0)
    return judge(side, phones, record, outcomes, kills, report or {}, wall, largest, args.window)


def judge(
    side: str,
    phones: list[str],
    record: dict[str, Any],
    outcomes: list[list[Any]],
    kills: list[dict[str, Any]],
    report: dict[str, Any],
    wall: float,
    largest: int,
    window: int,
) -> dict[str, Any]:
    """Compare the final outcomes with the simulator's messages; return the side's figures."""
    per_phone = Counter(phone for _, phone in record["messages"])
    phone_of = {int(message_id): phone for message_id, phone in record["messages"]}
    states = Counter(state for _, _, state, _, _ in outcomes)
    by_phone = {phone: (state, message_id) for _, phone, state, message_id, _ in outcomes}
    wrong_id = sum(
        1
        for phone, (state, message_id) in by_phone.items()
        if state == "sent" and (message_id is None or phone_of.get(int(message_id)) != phone)
    )
    unconfirmed = [phone for phone, (state, _) in by_phone.items() if state == "unconfirmed"]
    for kill in kills:
        kill["in_flight_reached"] = sum(1 for _, phone in kill["in_flight"] if per_phone[phone])
    return {
        "side": side,
        "recipients": len(phones),
        "tries": len(kills) + 1,
        "kills": kills,
        "counts": report.get("counts", {}),
        "messages": sum(per_phone.values()),
        "distinct_phones": len(per_phone),
        "duplicates": sum(1 for c in per_phone.values() if c > 1),
        "extra_messages": sum(c - 1 for c in per_phone.values() if c > 1),
        "outcomes": len(by_phone),
        "sent": states["sent"],
        "unconfirmed": states["unconfirmed"],
        "unconfirmed_reached": sum(1 for phone in unconfirmed if per_phone[phone]),
        "other_states": {s: c for s, c in states.items() if s not in ("sent", "unconfirmed")},
        "not_reported": len(set(phones) - set(by_phone)),
        "never_sent": sum(1 for phone in phones if not per_phone[phone]),
        "sent_with_wrong_id": wrong_id,
        "wall_s": wall,
        "largest_store_value": largest,
        "window": window,
        "requests": len(record["answers"]),
        "throttled": sum(1 for _, _, status in record["answers"] if status == 429),
    }


def main(argv: list[str] | None = None) -> int:
    """
    Run the ledger side and the baseline; print the tables, the checks and a summary; 1 on a miss.

    :param argv: command-line arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bulk_kill_retry",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--recipients", type=int, default=2_000, help="recipients of the bulk send")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs, each followed by a retry")
    parser.add_argument("--rate", type=float, default=45.0, help="max_requests_per_second")
    parser.add_argument("--limit", type=int, default=50, help="the simulator's requests/s per key (0: none)")
    parser.add_argument("--window", type=int, default=50, help="the operator's window")
    parser.add_argument("--seed", type=int, default=22, help="random seed of the kill delays")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run without a store")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds a try may take")
    parser.add_argument("--json", help="also write every measurement to this JSON file")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_run_child(json.loads(sys.stdin.read()))), flush=True)
        return 0

    machine = Machine.here()
    print(machine.describe())
    print(
        f"command: python -m benchmarks.bulk_kill_retry {' '.join(argv if argv is not None else sys.argv[1:])}"
    )
    print(
        f"OctopodsBulkSendOperator, {args.recipients:,} recipients, window {args.window}, "
        f"max_requests_per_second {args.rate:g}, simulator limit {args.limit or 'none'}/s; "
        f"{args.kills} SIGKILLs (seed {args.seed}), a retry after each",
        flush=True,
    )
    phones = valid_phones(args.recipients)
    sides = [run_side("ledger", args, phones)]
    print(f"  ledger: done in {sides[0]['wall_s']:.1f} s", flush=True)
    if not args.no_baseline:
        sides.append(run_side("no-ledger", args, phones))
        print(f"  no-ledger: done in {sides[1]['wall_s']:.1f} s", flush=True)
    print()
    print("## Kills")
    print()
    print(
        "| side | kill | delay after the try's first send (s) | messages: at the try's start, at the kill, "
        "0.5 s later | window in flight (marked sending, never recorded) | of which reached Octopods |"
    )
    print("| --- | ---: | ---: | --- | ---: | ---: |")
    for r in sides:
        for number, kill in enumerate(r["kills"], start=1):
            flight = len(kill["in_flight"]) if r["side"] == "ledger" else "(no ledger)"
            reached = kill["in_flight_reached"] if r["side"] == "ledger" else ""
            state = "" if kill["killed"] else " (the try had ended: no kill)"
            print(
                f"| {r['side']} | {number}{state} | {kill['delay_s']:.2f} | {kill['messages_before']:,}, "
                f"{kill['messages_at_kill']:,}, {kill['messages_after']:,} | {flight} | {reached} |"
            )
    print()
    print("## Outcome")
    print()
    print(
        "| side | recipients | tries | messages | distinct phones | phones with 2+ messages | sent | "
        "unconfirmed (reached Octopods / did not) | other | not reported | never sent | wall (s) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: |")
    for r in sides:
        unconfirmed = r["unconfirmed"]
        reached = r["unconfirmed_reached"]
        print(
            f"| {r['side']} | {r['recipients']:,} | {r['tries']} | {r['messages']:,} | {r['distinct_phones']:,} "
            f"| {r['duplicates']:,} | {r['sent']:,} | {unconfirmed} ({reached} / {unconfirmed - reached}) "
            f"| {r['other_states'] or 'none'} | {r['not_reported']} | {r['never_sent']} | {r['wall_s']:.1f} |"
        )
    print()
    ledger = sides[0]
    killed = sum(1 for k in ledger["kills"] if k["killed"])
    per_kill = [len(k["in_flight"]) for k in ledger["kills"]]
    checks = [
        ("every kill landed mid-send", f"{killed} of {args.kills}", killed == args.kills),
        ("zero duplicates", f"{ledger['duplicates']} phones with 2+ messages", ledger["duplicates"] == 0),
        (
            "every recipient sent or reported unconfirmed",
            f"{ledger['sent']:,} sent + {ledger['unconfirmed']} unconfirmed of {ledger['recipients']:,}; "
            f"{ledger['not_reported']} not reported, other states {ledger['other_states'] or 'none'}, "
            f"{ledger['sent_with_wrong_id']} sent with a message id that is not theirs",
            ledger["sent"] + ledger["unconfirmed"] == ledger["recipients"]
            and not ledger["not_reported"]
            and not ledger["sent_with_wrong_id"],
        ),
        (
            f"unconfirmed at most one window ({args.window}) per kill",
            f"{ledger['unconfirmed']} <= {args.kills} x {args.window}; per kill {per_kill}",
            ledger["unconfirmed"] <= args.kills * args.window and all(c <= args.window for c in per_kill),
        ),
        (
            "the unconfirmed are exactly the windows in flight at the kills",
            f"{sum(per_kill)} in flight, {ledger['unconfirmed']} unconfirmed",
            sum(per_kill) == ledger["unconfirmed"],
        ),
    ]
    print("## Targets")
    print()
    print("| target | measured | result |")
    print("| --- | --- | --- |")
    for what, measured, met in checks:
        print(f"| {what} | {measured} | **{'met' if met else 'MISSED'}** |")
    missed = [what for what, _, met in checks if not met]
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"machine": asdict(machine), "args": vars(args), "sides": sides, "checks": checks}, indent=2
            )
        )
    summary = (
        f"kill and retry, {args.recipients:,} recipients, {args.kills} kills: {ledger['duplicates']} duplicates, "
        f"{ledger['sent']:,} sent, {ledger['unconfirmed']} unconfirmed "
        f"({ledger['unconfirmed_reached']} reached Octopods), per kill {per_kill}"
    )
    if len(sides) > 1:
        summary += f"; without a store: {sides[1]['duplicates']:,} phones with 2+ messages"
    print()
    print(summary + (f"; MISSED: {', '.join(missed)}" if missed else "; every target met"))
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
