"""
Shared pieces of the benchmarks: the simulator in its own process and its admin API, the
Airflow connections that point at it, running one measured phase, statistics and the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator, Sequence

ROOT = Path(__file__).resolve().parent.parent
#: The simulator's key in benchmarks (a made-up one: the simulator is the only server).
BENCH_KEY = "bench-channel-key-5e1d0c2b9a47"
#: The simulator's WhatsApp key in benchmarks (each channel has its own key).
BENCH_WHATSAPP_KEY = "bench-whatsapp-key-8c3f17e2d6b0"
OCTOPODS_CONN_ID = "octopods_bench"
HTTP_CONN_ID = "http_bench"
#: The WhatsApp trigger's default connection, which the WhatsApp benchmark defines.
WHATSAPP_CONN_ID = "octopods_whatsapp_default"


def connection_env(url: str, key: str = BENCH_KEY) -> dict[str, str]:
    """
    Return the environment that defines both benchmark connections to the simulator at ``url``.

    ``octopods_bench`` is an Octopods connection; ``http_bench`` is the ``http`` connection a user
    of ``HttpSensor`` would write: the simulator as host, the key as the ``X-Octopods-Auth``
    header in the extras.

    :param url: the simulator's base URL.
    :param key: the Channel API key.
    """
    octopods = {"conn_type": "octopods", "host": url, "password": key}
    http = {"conn_type": "http", "host": url, "extra": {"X-Octopods-Auth": key}}
    return {
        f"AIRFLOW_CONN_{OCTOPODS_CONN_ID.upper()}": json.dumps(octopods),
        f"AIRFLOW_CONN_{HTTP_CONN_ID.upper()}": json.dumps(http),
    }


def whatsapp_connection_env(
    url: str, key: str = BENCH_WHATSAPP_KEY, extra: dict[str, Any] | None = None
) -> dict[str, str]:
    """
    Return the environment that defines the WhatsApp connection ``octopods_whatsapp_default``.

    :param url: the simulator's base URL.
    :param key: the WhatsApp Business API key.
    :param extra: the connection's extras, e.g. ``{"max_requests_per_second": 20}``.
    """
    conn: dict[str, Any] = {"conn_type": "octopods", "host": url, "password": key}
    if extra:
        conn["extra"] = extra
    return {f"AIRFLOW_CONN_{WHATSAPP_CONN_ID.upper()}": json.dumps(conn)}


@contextlib.contextmanager
def environ(env: dict[str, str]) -> Iterator[None]:
    """
    Set ``env`` in this process's environment for the block, then restore what was there.

    :param env: the variables to set.
    """
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def timeline(delivered_after: float) -> list[list[Any]]:
    """Return the simulator timeline of a message delivered after ``delivered_after`` seconds."""
    if delivered_after <= 0:
        return [[0.0, "delivered"]]
    return [[0.0, "queued"], [min(1.0, delivered_after / 2), "sent"], [delivered_after, "delivered"]]


def workload(n: int, seed: int, min_delivery: float, max_delivery: float, spread: float) -> dict[str, Any]:
    """
    Return the seeded random delivery times and start offsets of ``n`` waits.

    Both sides of a comparison get the same numbers, so they wait on the same deliveries.

    :param n: how many messages.
    :param seed: the random seed.
    :param min_delivery: the earliest delivery, in seconds after the messages are created.
    :param max_delivery: the latest delivery.
    :param spread: start offsets are uniform in ``[0, spread)`` seconds.
    """
    rng = random.Random(seed)
    delays = [rng.uniform(min_delivery, max_delivery) for _ in range(n)]
    offsets = [rng.uniform(0.0, spread) if spread > 0 else 0.0 for _ in range(n)]
    return {"delays": delays, "offsets": offsets}


class AdminClient:
    """
    The simulator's ``/_simulator/`` endpoints, over plain ``urllib``.

    Every call opens one TCP connection (``urllib`` sends ``Connection: close``), which the
    simulator counts like any other: :meth:`stats` names its own, so callers subtract it.

    :param url: the simulator's base URL.
    """

    def __init__(self, url: str) -> None:
        self.url = url

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def create_messages(self, delays: list[float]) -> tuple[list[int], float]:
        """Create one message per delivery time; return their ids and the UNIX time they start."""
        answer = self._call(
            "POST", "/_simulator/messages", {"messages": [{"timeline": timeline(d)} for d in delays]}
        )
        return [int(i) for i in answer["message_ids"]], float(answer["created_at"])

    def create_scripted(self, specs: list[dict[str, Any]]) -> tuple[list[int], float]:
        """
        Create one message per spec (``timeline``, optional ``channel``, ``phone_number``, ``template_id``).

        Return their ids and the UNIX time their timelines start.
        """
        answer = self._call("POST", "/_simulator/messages", {"messages": specs})
        return [int(i) for i in answer["message_ids"]], float(answer["created_at"])

    def settings(self, **changes: Any) -> dict[str, Any]:
        """Change the simulator's settings (e.g. ``list_shape="array"``), if any; return them all."""
        if changes:
            return dict(self._call("POST", "/_simulator/settings", changes))
        return dict(self._call("GET", "/_simulator/settings"))

    def stats(self) -> dict[str, Any]:
        """Return the simulator's counters (the connection of this very call included)."""
        return dict(self._call("GET", "/_simulator/stats"))


class SimulatorProcess:
    """
    ``octopods-simulator`` in a child process, so its CPU is not counted against the client.

    It runs with ``--quiet``: the simulator otherwise logs a line per request on stderr, CPU the
    benchmarks must not pay (on a shared machine, the server's CPU is the client's too).

    :param key: the valid SMS Channel API key.
    :param args: more command-line arguments, e.g. ``["--rate-limit", "50"]``.
    :param whatsapp_key: the valid WhatsApp Business API key.
    """

    #: How the child runs the simulator (``python <command> --port 0 ...``).
    command: tuple[str, ...] = ("-m", "airflow_provider_octopods.testing")

    def __init__(
        self, key: str = BENCH_KEY, args: Sequence[str] = (), whatsapp_key: str = BENCH_WHATSAPP_KEY
    ) -> None:
        self.key = key
        self.whatsapp_key = whatsapp_key
        self.args = list(args)
        self.url = ""
        self._proc: subprocess.Popen[str] | None = None
        self._log: IO[str] | None = None

    def __enter__(self) -> Self:
        self._log = tempfile.TemporaryFile("w+")
        self._proc = subprocess.Popen(
            [
                sys.executable,
                *self.command,
                "--port",
                "0",
                "--key",
                self.key,
                "--whatsapp-key",
                self.whatsapp_key,
                "--quiet",
                *self.args,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        assert self._proc.stdout is not None
        first = self._proc.stdout.readline().strip()
        if not first.startswith("Octopods simulator listening on "):
            self.__exit__()
            raise RuntimeError(f"The simulator did not start: {first or 'no output'}")
        self.url = first.rsplit(" ", 1)[1]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def admin(self) -> AdminClient:
        """The simulator's admin endpoints."""
        return AdminClient(self.url)


def run_phase(
    spec: dict[str, Any], url: str, *, in_process: bool = False, timeout: float = 900
) -> dict[str, Any]:
    """
    Run one measured phase (see :mod:`benchmarks._phase`) and return its result.

    By default in a fresh Python process, so memory, CPU and imports of one side never mix with
    the other's; ``in_process`` runs it here instead (the smoke tests do, to stay fast).

    :param spec: the phase's description.
    :param url: the simulator's base URL.
    :param in_process: run in this process.
    :param timeout: seconds the child may take.
    """
    if in_process:
        from benchmarks import _phase

        with environ(connection_env(url)):
            return _phase.run(dict(spec, url=url))
    home = tempfile.mkdtemp(prefix="octopods-bench-home-")
    env = {
        **os.environ,
        **connection_env(url),
        "AIRFLOW_HOME": home,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    with tempfile.TemporaryFile("w+") as log:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks._phase"],
            input=json.dumps(dict(spec, url=url)),
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            log.seek(0)
            tail = log.read()[-3000:]
            raise RuntimeError(f"The {spec['side']} phase failed (exit {done.returncode}):\n{tail}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def percentile(values: list[float], q: float) -> float:
    """Return the nearest-rank ``q`` percentile (0-100) of ``values`` (0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def ratio(worse: float, better: float) -> float:
    """Return ``worse / better``, or infinity when ``better`` is 0 and ``worse`` is not."""
    if better <= 0:
        return float("inf") if worse > 0 else 1.0
    return worse / better


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


@dataclass(frozen=True)
class Machine:
    """What the numbers were measured on."""

    nproc: int
    cpu: str
    python: str
    airflow: str
    http_provider: str
    aiohttp: str
    load: str

    @classmethod
    def here(cls) -> Machine:
        """Describe this machine."""
        try:
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        except OSError:
            load = "unknown"
        return cls(
            nproc=os.cpu_count() or 0,
            cpu=_cpu_model(),
            python=platform.python_version(),
            airflow=_version("apache-airflow"),
            http_provider=_version("apache-airflow-providers-http"),
            aiohttp=_version("aiohttp"),
            load=load,
        )

    def describe(self) -> str:
        """One line for the report."""
        return (
            f"machine: {self.nproc} CPUs ({self.cpu}), Python {self.python}, Airflow {self.airflow}, "
            f"http provider {self.http_provider}, aiohttp {self.aiohttp}, load average {self.load}"
        )


def add_workload_arguments(parser: argparse.ArgumentParser) -> None:
    """
    Add the options shared by the triggerer benchmarks: polling, deliveries, harness and output.

    :param parser: the benchmark's argument parser.
    """
    parser.add_argument("--poll-interval", type=float, default=2.0, help="seconds between polls, both sides")
    parser.add_argument("--min-delivery", type=float, default=2.0, help="earliest delivery (s)")
    parser.add_argument("--max-delivery", type=float, default=20.0, help="latest delivery (s)")
    parser.add_argument("--seed", type=int, default=6, help="random seed of deliveries and starts")
    parser.add_argument(
        "--calibrate", type=float, default=2.0, help="seconds measuring the harness's own CPU per phase"
    )
    parser.add_argument("--in-process", action="store_true", help="run phases here (smoke tests)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds a phase may take")
    parser.add_argument("--json", help="also write every measurement to this JSON file")


# -- the simulator with a record of its answers (bulk sends) ----------------------------------

#: The admin path of :class:`RecordingSimulatorProcess`: every message's phone, every answer's time.
RECORD_PATH = "/_simulator/bench-record"


def _recording_simulator_class() -> type:
    """The simulator class of :class:`RecordingSimulatorProcess` (imported in the child only)."""
    import time

    from airflow_provider_octopods.testing.simulator import OctopodsSimulator

    class RecordingSimulator(OctopodsSimulator):  # type: ignore[misc]
        """
        ``OctopodsSimulator``, also keeping ``[UNIX time, "send" | "other", HTTP status]`` of every
        answer to an Octopods endpoint and the UNIX time the rate limit admitted each request,
        served with each message's ``[id, phone]`` at ``RECORD_PATH``.
        """

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.answers: list[tuple[float, str, int]] = []
            self.admitted: list[float] = []

        def _admit(self, key: str | None) -> int | None:
            retry_after = super()._admit(key)
            if retry_after is None and self.rate_limit is not None:
                self.admitted.append(time.time())
            return retry_after

        async def _respond(self, request: Any) -> Any:
            if request.path == RECORD_PATH:
                with self._lock:
                    record = {
                        "messages": [[m.message_id, m.phone_number] for m in self.messages.values()],
                        "answers": list(self.answers),
                        "admitted": list(self.admitted),
                    }
                return self._json(200, record)
            response = await super()._respond(request)
            if not request.path.startswith("/_simulator/"):
                kind = "send" if request.method == "POST" else "other"
                with self._lock:
                    self.answers.append((time.time(), kind, response.status))
            return response

    return RecordingSimulator


def serve_recording_simulator(argv: list[str] | None = None) -> int:
    """
    Run ``octopods-simulator``'s command line (same options) with the recording simulator.

    :param argv: command-line arguments (default: ``sys.argv[1:]``).
    """
    from airflow_provider_octopods.testing import __main__ as cli

    cli.OctopodsSimulator = _recording_simulator_class()  # type: ignore[assignment,misc]
    return cli.main(argv)


class RecordingSimulatorProcess(SimulatorProcess):
    """
    :class:`SimulatorProcess`, whose simulator also records what it answered, and when.

    :meth:`record` returns ``{"messages": [[id, phone], ...], "answers": [[UNIX time, "send" |
    "other", status], ...], "admitted": [UNIX time, ...]}``: the phone of every message it
    created, the time and status of every answer to an Octopods endpoint (admin calls excluded)
    and, with ``--rate-limit``, when its sliding window admitted each request (its own clock).
    Same arguments as its parent.
    """

    #: Its own entry point, which serves :func:`_recording_simulator_class`'s simulator.
    command = ("-c", "from benchmarks._common import serve_recording_simulator as s; raise SystemExit(s())")

    def record(self) -> dict[str, Any]:
        """Every message's ``[id, phone]``, every answer's ``[UNIX time, kind, status]``, every admission's time."""
        return dict(self.admin._call("GET", RECORD_PATH))
