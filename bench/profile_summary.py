#!/usr/bin/env python3
"""Summarise a py-spy "raw" (collapsed stacks) profile of the RadSight server.

    .venv/bin/python bench/archive.py --quick --only stow --profile-radsight /tmp/rs.txt
    .venv/bin/python bench/profile_summary.py /tmp/rs.txt --focus ingest_file

Prints, for the samples whose stack contains ``--focus`` (a substring of a frame; all
samples when not given): the share of samples spent inside each function (inclusive, the
function anywhere on the stack) and at the top of the stack (self), largest first. The
profile is recorded with ``--idle``, so waiting (fsync, locks, sockets) counts as time.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``func (file.py)``: lines merged, paths shortened."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    short = "/".join(path.split("/")[-2:])
    return f"{m.group('func')} ({short})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--focus", help="keep only samples with a frame containing this text")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    inclusive: Counter[str] = Counter()
    self_: Counter[str] = Counter()
    total = 0
    for line in args.profile.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith(("thread (", "process "))]
        if args.focus and not any(args.focus in f for f in frames):
            continue
        count = int(count_s)
        total += count
        names = [frame_name(f) for f in frames]
        for name in set(names):
            inclusive[name] += count
        if names:
            self_[names[-1]] += count
    if not total:
        print("no samples matched", file=sys.stderr)
        return 1
    print(f"{total} samples{f' containing {args.focus!r}' if args.focus else ''}\n")
    print("inclusive %  function")
    for name, n in inclusive.most_common(args.top):
        print(f"{100 * n / total:10.1f}  {name}")
    print("\nself %      function")
    for name, n in self_.most_common(args.top):
        print(f"{100 * n / total:10.1f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
