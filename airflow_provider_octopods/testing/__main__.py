"""
Run the Octopods simulator from the command line: ``octopods-simulator --port 8765``.

The first line printed is ``Octopods simulator listening on <url>`` (flushed at once, so a
parent process can read the port of ``--port 0``), then the Airflow connections of both
channels, the magic numbers and the templates. Every request answered is logged on stderr as
``METHOD PATH STATUS`` unless ``--quiet``. The soft limit on open files is raised to the hard
limit, so thousands of concurrent clients (``benchmarks/``) do not run out of sockets. The admin
endpoints (``/_simulator/messages``, ``/_simulator/stats``, ``/_simulator/settings``) are
described in :mod:`airflow_provider_octopods.testing.simulator`; ``--help`` describes all of it in
plain text.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from typing import Any

from airflow_provider_octopods.testing import simulator
from airflow_provider_octopods.testing.simulator import (
    DELIVERED_NUMBER,
    LIST_SHAPES,
    MAGIC_NUMBERS,
    STATUS_SHAPES,
    TEMPLATES,
    WHATSAPP_MAGIC_NUMBERS,
    WHATSAPP_PATH,
    ChannelName,
    OctopodsSimulator,
    Status,
    media_header,
    template_placeholders,
)

DESCRIPTION = """\
Run a local Octopods server for tests and demos, until Ctrl-C or SIGTERM.

It answers like Octopods on http://HOST:PORT: SMS sends and statuses, and WhatsApp templates,
template sends, statuses and the list of sent messages. Each channel has its own key, sent in
the X-Octopods-Auth header: --key for SMS, --whatsapp-key for WhatsApp. The other channel's key,
or any other key, gets HTTP 401.

At start it prints the URL it listens on, the two Airflow connections to export (the SMS one as
AIRFLOW_CONN_OCTOPODS_DEFAULT, the WhatsApp one as AIRFLOW_CONN_OCTOPODS_WHATSAPP_DEFAULT), the
magic numbers and the templates. Then every request it answers is logged on stderr as one line,
"METHOD PATH STATUS", without the key; --quiet turns that off.
"""


def _describe(fate: Any) -> str:
    """One line on a magic number's fate, e.g. ``undelivered (The carrier blocked ...)``."""
    if isinstance(fate, Status):
        return fate.status + (f" ({fate.failure_reason})" if fate.failure_reason else " for ever")
    return f"the send is refused: HTTP {fate.status}, error_code {fate.body.get('error_code')}"


def _describe_path(path: tuple[str | Status, ...]) -> str:
    """One line on a WhatsApp message's path, e.g. ``sent, then delivered, then deleted``."""
    if not path:
        return "unknown for ever"
    statuses = [s if isinstance(s, Status) else Status(s) for s in path]
    last = statuses[-1]
    note = (
        f" ({last.failure_reason})"
        if last.failure_reason
        else " (never read)"
        if last.status == "delivered"
        else ""
    )
    return ", then ".join(s.status for s in statuses) + note


def _describe_template(template: dict[str, Any]) -> str:
    """Two lines on a template: id, name, language, state, then what a send needs."""
    counts = template_placeholders(template)
    state = template["template_status"] + ("" if template["active"] else ", inactive")
    head = f"  {template['template_id']}  {template['template_name']} ({template['language']}, {state})"
    needs = [f"body: {template['template_body']!r}"]
    if counts["body"] != sum(counts.values()):
        sections = ", ".join(f"{name} {n}" for name, n in counts.items())
        needs.append(f"placeholders per section ({sections}): send message_variables by section")
    if media_header(template):
        needs.append(f"{media_header(template)} header: send header_attachment_url")
    return head + "\n" + "\n".join(f"       {need}" for need in needs)


def _epilog() -> str:
    """The magic numbers, templates and admin endpoints, in plain text."""
    lines = ["SMS numbers ending in these digits get a scripted fate (e.g. +12015550102):"]
    lines += [f"  ...{suffix}  {_describe(fate)}" for suffix, fate in MAGIC_NUMBERS.items()]
    lines.append(f"  any other valid number (e.g. {DELIVERED_NUMBER}): queued, then sent, then delivered")
    lines += [
        "",
        "A WhatsApp message is unknown until --sent-after seconds (0.3), then sent, delivered",
        "at --deliver-after and read at --read-after, unless its number ends in:",
    ]
    lines += [f"  ...{suffix}  {_describe_path(path)}" for suffix, path in WHATSAPP_MAGIC_NUMBERS.items()]
    lines.append(f"  any other valid number: {_describe_path(WHATSAPP_PATH)}")
    lines += ["", "WhatsApp templates (only Accepted ones can be sent):"]
    lines += [_describe_template(template) for template in TEMPLATES]
    lines += [
        "",
        "Admin endpoints (no key, not rate limited, not counted as requests):",
        "  POST /_simulator/messages  create scripted messages, e.g.",
        '      {"messages": [{"timeline": [[0, "queued"], [2, "delivered"]],',
        '                     "phone_number": "+12015550123", "channel": "sms"}]}',
        '      ("channel" is "sms" or "whatsapp"; a WhatsApp message may name its "template_id");',
        '      answers {"message_ids": [...], "created_at": <UNIX time>}',
        "  GET /_simulator/stats  counters: connections, requests, status requests of each",
        "      channel, list requests, sends, messages, 429s answered, CPU seconds",
        "  GET or POST /_simulator/settings  read or change the answer shapes, e.g.",
        '      {"untrackable": true, "status_shape": "overview", "list_shape": "array"}',
    ]
    return "\n".join(lines)


def _raise_open_files_limit() -> None:
    """Raise the soft limit on open files to the hard one (where the platform has the notion)."""
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = 65536 if hard == resource.RLIM_INFINITY else hard
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _log_requests() -> None:
    """Write the simulator's request log (``METHOD PATH STATUS``) on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger(simulator.__name__)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="octopods-simulator",
        description=DESCRIPTION,
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, default=8765, help="port (0 picks a free one)")
    parser.add_argument("--key", default="sim-channel-key-0123456789", help="the valid SMS Channel API key")
    parser.add_argument(
        "--whatsapp-key", default="sim-whatsapp-key-0123456789", help="the valid WhatsApp Business API key"
    )
    parser.add_argument("--sent-after", type=float, default=0.3, help="seconds until sent messages are sent")
    parser.add_argument(
        "--deliver-after", type=float, default=1.0, help="seconds until sent messages are delivered"
    )
    parser.add_argument(
        "--read-after", type=float, default=2.0, help="seconds until sent WhatsApp messages are read"
    )
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=None,
        metavar="N",
        help="answer HTTP 429 with Retry-After past N requests per second per key",
    )
    parser.add_argument(
        "--untrackable",
        action="store_true",
        help="answer successful sends with only a request_id, as in HubSpot workspaces",
    )
    parser.add_argument(
        "--status-shape",
        choices=STATUS_SHAPES,
        default="reference",
        help="WhatsApp status answers: lower-case status with timestamps (reference) or upper-case "
        "status with status_message (overview)",
    )
    parser.add_argument(
        "--list-shape",
        choices=LIST_SHAPES,
        default="messages",
        help='list of sent WhatsApp messages: {"messages": [...]} (messages) or a bare array (array)',
    )
    parser.add_argument("--quiet", action="store_true", help="do not log each request on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    """
    Serve a simulator until interrupted, printing the connections to use.

    :param argv: command-line arguments (default: ``sys.argv[1:]``).
    """
    args = _parser().parse_args(argv)
    _raise_open_files_limit()
    if not args.quiet:
        _log_requests()
    sim = OctopodsSimulator(
        args.key,
        whatsapp_api_key=args.whatsapp_key,
        host=args.host,
        port=args.port,
        sent_after=args.sent_after,
        deliver_after=args.deliver_after,
        read_after=args.read_after,
        rate_limit=args.rate_limit,
        untrackable=args.untrackable,
        status_shape=args.status_shape,
        list_shape=args.list_shape,
    )
    sim.start()
    print(f"Octopods simulator listening on {sim.url}", flush=True)
    print("Connections for Airflow (SMS, then WhatsApp):")
    connections: tuple[tuple[str, ChannelName], ...] = (
        ("octopods_default", "sms"),
        ("octopods_whatsapp_default", "whatsapp"),
    )
    for conn_id, channel in connections:
        for name, value in sim.connection_uri_env(conn_id, channel=channel).items():
            print(f"  export {name}='{value}'")
    print(_epilog(), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
