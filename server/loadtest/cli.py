"""`python -m server loadtest`: arguments, the run, and its report.

The report is a human summary on stdout followed by one JSON line (the last
line), so scripts such as `make bench` read the figures without parsing prose.
The exit status is 0 only for a clean run: every connection made, no errors.

`--door` picks how the sockets reach the server: `socketio` (the default,
Socket.IO on `--namespace`) or `ws`, the Go Chat Web door's plain WebSocket
at `/ws`. Users are registered and their chats opened over `/api/v1` either way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import aiohttp

from server.loadtest.population import SetupFailed
from server.loadtest.runner import DOORS, LoadTest, Options, Result, rss_kib

DEFAULT_URL = "http://127.0.0.1:3001"  # the server's own default address (server.port)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default=DEFAULT_URL, help="the server to load (default %(default)s, where `make run` listens)"
    )
    parser.add_argument(
        "--also-url",
        action="append",
        default=[],
        metavar="URL",
        help="another process of the same deployment (repeatable): sockets go round-robin over every URL",
    )
    parser.add_argument("--users", type=int, default=200, help="users to register and connect (default %(default)s)")
    parser.add_argument(
        "--group-size", type=int, default=2, help="members per chat: 2 for private chats, more for groups"
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured (default %(default)s)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds sent before measuring")
    parser.add_argument(
        "--rate", type=float, help="aggregate sends per second across all sockets; default: closed loop per socket"
    )
    parser.add_argument("--idle", action="store_true", help="connect and hold the sockets, sending nothing")
    parser.add_argument("--deflate", action="store_true", help="offer permessage-deflate, as browsers do")
    parser.add_argument(
        "--door",
        choices=DOORS,
        default="socketio",
        help="how the sockets connect: `socketio` (Socket.IO on --namespace, the default) or `ws` (the plain"
        " WebSocket at /ws of the Go Chat Web door: JSON `send_message` frames with a request_id, answered `ack`;"
        " `new_message` frames carry `client_id` and also come back to the sender, which is checked but not"
        " counted as a delivery)",
    )
    parser.add_argument(
        "--namespace", default="/messages", help="Socket.IO namespace (default %(default)s; --door socketio only)"
    )
    parser.add_argument("--content-size", type=int, default=64, help="characters per message (default %(default)s)")
    parser.add_argument("--ack-timeout", type=float, default=10.0, help="an ack later than this counts as an error")
    parser.add_argument("--drain", type=float, default=5.0, help="seconds to wait for deliveries after sending")
    parser.add_argument("--max-messages", type=int, default=5_000_000, help="stop sending after this many")
    parser.add_argument(
        "--server-pid",
        type=_server_pid,
        help="a server process on this machine (with --workers, one worker): report its memory, read from /proc",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line every second")


def _server_pid(text: str) -> int:
    """A process whose memory this machine can read, or the argument is refused before anything runs."""
    try:
        pid = int(text)
        rss_kib(pid)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a process id") from None
    except OSError:
        raise argparse.ArgumentTypeError(
            f"no process {text} whose memory can be read here (/proc/{text}/status): the server must run on"
            " this machine"
        ) from None
    return pid


def options_from(args: argparse.Namespace) -> Options:
    return Options(
        url=args.url,
        also_urls=tuple(args.also_url),
        users=args.users,
        group_size=args.group_size,
        duration=args.duration,
        warmup=0.0 if args.idle else args.warmup,
        rate=args.rate,
        idle=args.idle,
        deflate=args.deflate,
        namespace=args.namespace,
        door=args.door,
        content_size=args.content_size,
        ack_timeout=args.ack_timeout,
        drain=args.drain,
        max_messages=args.max_messages,
        server_pid=args.server_pid,
        progress=not args.quiet,
    )


def summary(result: Result) -> str:
    o = result.options
    d = result.as_dict()
    lines = [
        f"WhatsChat load test against {o.url} (run {result.tag}, {d['mode']}"
        + (", plain WebSocket /ws" if o.door == "ws" else "")
        + (f" at {o.rate:g}/s" if o.rate else "")
        + (", deflate offered" if o.deflate else "")
        + ")",
        f"  users {o.users} in chats of {o.group_size}; connected {result.connected}; set-up {result.connect.line()}",
    ]
    memory = result.memory
    if memory:
        lines.append(
            f"  server memory {memory['rssBeforeKiB']} -> {memory['rssAfterKiB']} KiB (peak {memory['rssPeakKiB']}):"
            f" {memory['perConnectionKiB']} KiB per connection"
        )
    if not o.idle:
        lines += [
            f"  {result.window:g} s measured: sent {result.sent} ({d['sentPerSecond']}/s),"
            f" acked {result.acked} ({d['ackedPerSecond']}/s),"
            f" delivered {result.delivered} of {result.expected} expected ({d['deliveredPerSecond']}/s)"
            + (f"; {result.echoed} echoed to their senders" if o.door == "ws" else ""),
            f"  ack latency: {result.ack.line()}",
            f"  end-to-end latency: {result.end_to_end.line()}",
            f"  this load generator used {100 * result.load_cpu:.0f}% of a core while sending",
        ]
    errors = ", ".join(f"{name} {count}" for name, count in sorted(result.errors.items())) or "none"
    lines.append(f"  errors: {errors}")
    return "\n".join(lines)


def clean(result: Result) -> bool:
    return result.connected == result.options.users and not result.errors


def main(args: argparse.Namespace) -> int:
    try:
        result = asyncio.run(LoadTest(options_from(args)).run())
    except (SetupFailed, aiohttp.ClientError, OSError) as exc:  # nothing was measured
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary(result))
    print(json.dumps(result.as_dict(), separators=(",", ":")), flush=True)
    return 0 if clean(result) else 1
