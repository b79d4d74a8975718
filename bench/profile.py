"""A py-spy profile (raw collapsed stacks) summarised as the share of time per function.

py-spy's `--gil` mode samples only the thread holding the GIL, so the shares are
of the CPU time Python spends, not of wall time spent waiting.
"""

from __future__ import annotations

from collections import Counter


def _frame(text: str) -> str:
    """`function (path/to/module.py:12)` as `function (module.py)`."""
    name, _, where = text.partition(" (")
    module = where.split(":", 1)[0].rsplit("/", 1)[-1]
    return f"{name} ({module})" if module else name


# frames on every sample, left out of the table: the command line and the event loop's runner (`server/run.py`)
OUTER_FRAMES = (
    "<module>",
    "_run_code",
    "_run_module_as_main",
    "main (__main__.py)",
    "serve (run.py)",
    "run (runners.py)",
    "Runner.run (runners.py)",
    "run_app (web.py)",
)


def profile_summary(raw: str, top: int = 20) -> str:
    """Markdown tables: the functions most often on the stack, and most often on top of it."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = [_frame(f) for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += samples
        own[frames[-1]] += samples
    if not total:
        return ""
    lines = [f"{total:,} samples.", "", "| on the stack | function |", "| ---: | --- |"]
    shown = [(f, n) for f, n in inclusive.most_common() if not f.startswith(OUTER_FRAMES)][:top]
    lines += [f"| {100 * n / total:.1f}% | `{f}` |" for f, n in shown]
    lines += ["", "| itself | function |", "| ---: | --- |"]
    lines += [f"| {100 * n / total:.1f}% | `{f}` |" for f, n in own.most_common(top)]
    return "\n".join(lines)
