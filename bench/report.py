"""`docs/performance.md` from the figures of one `make bench` run."""

from __future__ import annotations

from typing import Any

INTRO = """\
# Performance

Written by `make bench` (`python -m bench.run`); run it again to refresh this
page. Each scenario starts a fresh server as `make run` does (SQLite, one
process, no Redis) pinned to CPU 0 with `taskset`, and drives it with the
shipped load-test tool (`python -m server loadtest`) pinned to CPU 1. The same
scenarios run against a bare python-socketio server (`bench/baseline.py`: in
memory, tokens looked up in a dict, no validation, no persistence) speaking the
same subset, and WhatsChat's figures are given as ratios to it. WhatsChat
stores every message (SQLite, WAL) before it acknowledges or delivers it.

Set-up registers thousands of users, so the servers run with
`auth.bcrypt_rounds: 4` (the default, 12, costs 0.23 s a hash); no password is
checked while anything is measured.
"""

NOTES = """\
## Reading the table

- `dm`: 200 users in 100 private chats, every socket sending closed-loop (send,
  wait for the ack, send again) for the measured window after a warm-up.
  Messages per second are acknowledged sends; latencies are end to end (send to
  the other member's `new_message`).
- `ws-dm`: `dm` through the Go Chat Web door's plain WebSocket at `/ws`
  (`python -m server loadtest --door ws`): the same 200 users in pairs, the same
  closed loop and window, `send_message` frames with a `request_id` answered by
  an `ack`. WhatsChat only (the bare server has no `/ws`); the ratio column is
  its share of WhatsChat's own `dm` over Socket.IO. On this door every message
  also goes back to the sender's connection, and the first copy written to a
  recipient's connection is recorded as delivered and reported to the sender
  (`message_status`): four frames and a delivery record per message where
  Socket.IO's `dm` costs two frames (its load client never reports
  `message_delivered`). The echo is checked, not counted as a delivery.
- `group`: 500 users in groups of 50, sends at a fixed aggregate rate spread over
  all sockets; each message is delivered to 49 sockets. The rate is raised by
  half from the start rate until the end-to-end p99 reaches 100 ms or any error
  appears, then bisected twice; the figure is the deliveries per second at the
  highest rate that stayed within the limit.
- `idle`: authenticated sockets on `/messages` that send nothing; growth of the
  server's VmRSS from before the sockets connected to two seconds after, divided
  by the sockets.
- `history`: one private chat seeded with the messages (real rows, through the
  schema), then `GET /api/v1/messages/:chatId` timed from the client: the newest
  page of 50, a page of 50 by `before` cursor 90% of the way back, and a search
  matching a few hundred messages; sequential requests on one keep-alive
  connection.
- "deflate offered": the client offers permessage-deflate, as every browser does.
"""


def _ratio(ours: float | None, theirs: float | None, lower_is_better: bool = False) -> str:
    if not ours or not theirs:
        return ""
    return f"{(theirs / ours if lower_is_better else ours / theirs):.2f}x"


def _get(results: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = results.get(key)
    return value if isinstance(value, dict) else None


def _ws_dm_rows(results: dict[str, Any], mode: str, label: str) -> list[str]:
    """`ws-dm` beside `dm`: WhatsChat only, its ratio column the share of WhatsChat's own Socket.IO `dm`."""
    ours, socket_io = _get(results, f"ws-dm/whatschat/{mode}"), _get(results, f"dm/whatschat/{mode}")
    if not ours:
        return []
    ratio = _ratio(ours["ackedPerSecond"], (socket_io or {}).get("ackedPerSecond"))
    e2e = ours["endToEndMs"]
    rows = [
        f"| ws-dm, {label} | messages/s | {ours['ackedPerSecond']:,.0f} | | {ratio + ' of dm' if ratio else ''} |",
        f"| ws-dm, {label} | end-to-end p50 / p99 ms | {e2e['p50']:.1f} / {e2e['p99']:.1f} | | |",
        f"| ws-dm, {label} | load generator's CPU (of one core) | {100 * ours.get('loadGeneratorCpu', 0):.0f}% | | |",
    ]
    if ours["errors"]:
        rows.append(f"| ws-dm, {label} | errors | {ours['errors']} | | |")
    return rows


def _throughput_rows(results: dict[str, Any]) -> list[str]:
    rows = []
    for mode, label in (("plain", "no deflate"), ("deflate", "deflate offered")):
        ours, theirs = _get(results, f"dm/whatschat/{mode}"), _get(results, f"dm/baseline/{mode}")
        if not ours or not theirs:
            rows += _ws_dm_rows(results, mode, label)
            continue
        rows.append(
            f"| dm, {label} | messages/s | {ours['ackedPerSecond']:,.0f} | {theirs['ackedPerSecond']:,.0f}"
            f" | {_ratio(ours['ackedPerSecond'], theirs['ackedPerSecond'])} |"
        )
        a, b = ours["endToEndMs"], theirs["endToEndMs"]
        rows.append(
            f"| dm, {label} | end-to-end p50 / p99 ms | {a['p50']:.1f} / {a['p99']:.1f}"
            f" | {b['p50']:.1f} / {b['p99']:.1f} | |"
        )
        rows.append(
            f"| dm, {label} | load generator's CPU (of one core) | {100 * ours.get('loadGeneratorCpu', 0):.0f}%"
            f" | {100 * theirs.get('loadGeneratorCpu', 0):.0f}% | |"
        )
        errors = {**ours["errors"], **{f"baseline {k}": v for k, v in theirs["errors"].items()}}
        if errors:
            rows.append(f"| dm, {label} | errors | {ours['errors'] or 'none'} | {theirs['errors'] or 'none'} | |")
        rows += _ws_dm_rows(results, mode, label)
    ours_g, theirs_g = _get(results, "group/whatschat"), _get(results, "group/baseline")
    if ours_g and theirs_g:
        a, b = ours_g.get("best"), theirs_g.get("best")
        if a and b:
            ours_rate, theirs_rate = a["deliveredPerSecond"], b["deliveredPerSecond"]
            rows.append(
                f"| group | deliveries/s, p99 < 100 ms | {ours_rate:,.0f} | {theirs_rate:,.0f}"
                f" | {_ratio(ours_rate, theirs_rate)} |"
            )
            rows.append(
                f"| group | at messages/s (p99 ms) | {a['rate']:,.0f} ({a['endToEndMs']['p99']:.1f})"
                f" | {b['rate']:,.0f} ({b['endToEndMs']['p99']:.1f}) | |"
            )
    for mode, label in (("plain", "no deflate"), ("deflate", "deflate offered")):
        ours, theirs = _get(results, f"idle/whatschat/{mode}"), _get(results, f"idle/baseline/{mode}")
        if ours and theirs and ours.get("serverMemory") and theirs.get("serverMemory"):
            a, b = ours["serverMemory"]["perConnectionKiB"], theirs["serverMemory"]["perConnectionKiB"]
            rows.append(
                f"| idle, {label} | KiB per connection ({ours['connected']:,} sockets) | {a:.1f} | {b:.1f}"
                f" | {_ratio(a, b, lower_is_better=True)} |"
            )
    return rows


def _history_rows(results: dict[str, Any]) -> list[str]:
    figures = _get(results, "history")
    if not figures:
        return []
    rows = []
    for kind, label in (("newest", "newest page"), ("deep", "page by cursor, 90% back"), ("search", "search")):
        if kind in figures:
            f = figures[kind]
            scenario = f"history, {figures['messages']:,} messages"
            rows.append(f"| {scenario} | {label}: p50 / p99 ms | {f['p50']:.2f} / {f['p99']:.2f} | | |")
    return rows


def _multi(results: dict[str, Any]) -> list[str]:
    """One process without Redis against one and two on Redis: what the one ordered path costs."""
    multi = _get(results, "multi")
    if not multi:
        return []
    runs = [
        ("one process, no Redis (`make run`)", _get(results, "dm/whatschat/plain"), _get(results, "group/whatschat")),
        ("one process on Redis", multi.get("dm/1"), multi.get("group/1")),
        ("two processes on one Redis (CPU 0 and 1)", multi.get("dm/2"), multi.get("group/2")),
    ]
    lines = [
        "## Several processes on one Redis",
        "",
        "With Redis every event goes through Redis and back, in one order for every process, and every",
        'answer waits until Redis has taken its events (`docs/deploy.md`, "Several processes, one order").',
        "With two processes the members of each chat sit on different processes, and the second process",
        "shares CPU 1 with the load generator.",
        "",
        "| deployment | dm messages/s | dm end-to-end p50 / p99 ms | group deliveries/s, p99 < 100 ms"
        " | at messages/s (p99 ms) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, dm, group in runs:
        if not dm:
            continue
        e2e = dm["endToEndMs"]
        best = (group or {}).get("best")
        rate = f"{best['deliveredPerSecond']:,.0f}" if best else ""
        at = f"{best['rate']:,.0f} ({best['endToEndMs']['p99']:.1f})" if best else ""
        lines.append(f"| {label} | {dm['ackedPerSecond']:,.0f} | {e2e['p50']:.1f} / {e2e['p99']:.1f} | {rate} | {at} |")
    return [*lines, ""]


def _sweep(results: dict[str, Any]) -> list[str]:
    lines = []
    for target in ("whatschat", "baseline"):
        sweep = _get(results, f"group/{target}")
        if not sweep:
            continue
        lines += [
            f"`group` sweep, {target}:",
            "",
            "| messages/s | deliveries/s | p50 ms | p99 ms | errors |",
            "| ---: | ---: | ---: | ---: | --- |",
        ]
        for run in sweep["steps"]:
            e2e = run["endToEndMs"]
            lines.append(
                f"| {run['rate']:,.0f} | {run['deliveredPerSecond']:,.0f} | {e2e['p50']:.1f} | {e2e['p99']:.1f}"
                f" | {run['errors'] or 'none'} |"
            )
        lines.append("")
    return lines


def render(results: dict[str, Any]) -> str:
    machine = results["machine"]
    table = [
        "| scenario | figure | WhatsChat | bare python-socketio | ratio |",
        "| --- | --- | ---: | ---: | ---: |",
        *_throughput_rows(results),
        *_history_rows(results),
    ]
    parts = [
        INTRO,
        "## Latest figures",
        "",
        f"{machine['date']}, {machine['cpu']}, {machine['cores']} cores, Linux {machine['kernel']},"
        f" Python {machine['python']}; {machine['libraries']}.",
        "",
        *table,
        "",
        *_sweep(results),
        *_multi(results),
        NOTES,
    ]
    if results.get("profile"):
        parts += [
            "## Where the time goes",
            "",
            "py-spy (`--gil`: samples of the thread running Python) on WhatsChat's server during `dm` without deflate:",
            "",
            results["profile"],
            "",
        ]
    return "\n".join(parts)
