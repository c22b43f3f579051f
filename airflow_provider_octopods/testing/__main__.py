"""
Run the Octopods simulator from the command line: ``octopods-simulator --port 8765``.

The first line printed is ``Octopods simulator listening on <url>`` (flushed at once, so a
parent process can read the port of ``--port 0``). The soft limit on open files is raised to
the hard limit, so thousands of concurrent clients (``benchmarks/``) do not run out of sockets.
Its admin endpoints (``/_simulator/messages``, ``/_simulator/stats``) are described in
:mod:`airflow_provider_octopods.testing.simulator`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import threading
from typing import Any

from airflow_provider_octopods.testing.simulator import (
    DELIVERED_NUMBER,
    MAGIC_NUMBERS,
    OctopodsSimulator,
    Status,
)


def _describe(fate: Any) -> str:
    """One line on a magic number's fate, e.g. ``undelivered (The carrier blocked ...)``."""
    if isinstance(fate, Status):
        return fate.status + (f" ({fate.failure_reason})" if fate.failure_reason else " for ever")
    return f"the send is refused: HTTP {fate.status}, error_code {fate.body.get('error_code')}"


def _raise_open_files_limit() -> None:
    """Raise the soft limit on open files to the hard one (where the platform has the notion)."""
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = 65536 if hard == resource.RLIM_INFINITY else hard
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def main(argv: list[str] | None = None) -> int:
    """
    Serve a simulator until interrupted, printing the connection to use.

    :param argv: command-line arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(prog="octopods-simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, default=8765, help="port (0 picks a free one)")
    parser.add_argument("--key", default="sim-channel-key-0123456789", help="the valid Channel API key")
    parser.add_argument(
        "--deliver-after", type=float, default=1.0, help="seconds until sent SMS are delivered"
    )
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=None,
        metavar="N",
        help="answer HTTP 429 with Retry-After past N requests per second per key",
    )
    args = parser.parse_args(argv)
    _raise_open_files_limit()
    sim = OctopodsSimulator(
        args.key,
        host=args.host,
        port=args.port,
        deliver_after=args.deliver_after,
        rate_limit=args.rate_limit,
    )
    sim.start()
    print(f"Octopods simulator listening on {sim.url}", flush=True)
    print("Connection for Airflow:")
    print(f"  export AIRFLOW_CONN_OCTOPODS_DEFAULT='{json.dumps(sim.connection_extra())}'")
    print("Numbers ending in these digits get a scripted fate (e.g. +12015550102):")
    for suffix, fate in MAGIC_NUMBERS.items():
        print(f"  ...{suffix}: {_describe(fate)}")
    print(f"Any other valid number (e.g. {DELIVERED_NUMBER}) is delivered.", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
