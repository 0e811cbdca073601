"""The tether process (see `harmony.actors.drivers.tether` for why it exists).

Kept apart from the helpers the agent imports, so that running it with ``-m`` loads only
this module and what it needs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harmony.actors.drivers.base import group_members
from harmony.actors.drivers.tether import TETHER_FENCED, read_deadline

POLL = 0.25
"""How often the deadline file is read again while the deadline is far."""
KILL_WAIT = 5.0


def others_in_group(pgid: int) -> list[int]:
    """Live members of process group `pgid`, this process excluded."""
    me = os.getpid()
    return [pid for pid in group_members(pgid) or [] if pid != me]


class Tether:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.deadline_file = Path(args.deadline_file)
        if os.getpgrp() != os.getpid():
            os.setpgid(0, 0)  # the fence signals our group: it must hold only the workload
        self.pgid = os.getpgrp()

    def say(self, text: str) -> None:
        print(f"[harmony tether {self.args.workload}] {text}", file=sys.stderr, flush=True)

    def run(self) -> int:
        # The driver signals the whole group; the tether lets COMMAND answer and mirrors it.
        # (A Python handler, not SIG_IGN: handlers are reset by exec, SIG_IGN is inherited.)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: None)
        deadline = read_deadline(self.deadline_file)
        if deadline is None or time.monotonic() >= deadline:
            why = "no fence deadline" if deadline is None else "fence deadline already passed"
            self.say(f"not starting: {why} in {self.deadline_file}")
            return TETHER_FENCED
        from harmony.actors.drivers.spawn import spawn_tied

        try:
            child = spawn_tied(self.args.command)  # same group; killed if the tether dies
        except OSError as e:
            self.say(f"cannot start {self.args.command[0]}: {e.strerror or e}")
            return 127
        while True:
            now = time.monotonic()
            if now >= deadline:
                fresh = read_deadline(self.deadline_file)
                if fresh is None or fresh <= now:
                    return self.fence(child, deadline)
                deadline = fresh
            try:
                code = child.wait(timeout=min(POLL, max(0.0, deadline - now)))
            except subprocess.TimeoutExpired:
                fresh = read_deadline(self.deadline_file)
                deadline = max(deadline, fresh) if fresh is not None else deadline
                continue
            return self.mirror(code)

    def mirror(self, code: int) -> int:
        """Exit as COMMAND did: its status, or the signal that killed it."""
        if code < 0:
            with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler to reset
                signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
        return code

    def fence(self, child: subprocess.Popen[bytes], deadline: float) -> int:
        late = time.monotonic() - deadline
        self.say(f"fence deadline passed {late:.2f} s ago with no renewal: fencing the workload")
        started = time.monotonic()
        os.killpg(self.pgid, signal.SIGTERM)  # our own handler ignores it
        how = "terminated by SIGTERM"
        if not self._gone(child, self.args.grace):
            for pid in others_in_group(self.pgid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            how = f"killed by SIGKILL after {self.args.grace:g} s grace"
            if not self._gone(child, KILL_WAIT):
                how = f"group {self.pgid} still alive {KILL_WAIT:g} s after SIGKILL"
        took = time.monotonic() - started
        self.say(f"{how} in {took:.2f} s")
        self.journal(f"fence deadline passed with no renewal (agent silent): {how} in {took:.2f} s")
        return TETHER_FENCED

    def _gone(self, child: subprocess.Popen[bytes], timeout: float) -> bool:
        end = time.monotonic() + timeout
        while True:
            child.poll()
            if child.returncode is not None and not others_in_group(self.pgid):
                return True
            if time.monotonic() >= end:
                return False
            time.sleep(0.02)

    def journal(self, reason: str) -> None:
        if not self.args.journal:
            return
        from harmony.actors.journal import JournalEvent, append_event

        event = JournalEvent(
            site=self.args.site,
            workload=self.args.workload,
            kind="tether-fenced",
            reason=reason,
            mono=time.monotonic(),
            wall=time.time(),
            token=self.args.token,
            incarnation=self.args.incarnation,
        )
        try:
            append_event(Path(self.args.journal), event)
        except OSError as e:
            self.say(f"cannot append to the journal {self.args.journal}: {e}")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m harmony.actors.drivers.tether_main",
        description="Run COMMAND; fence it when the fence deadline in FILE passes.",
    )
    p.add_argument("--deadline-file", required=True, metavar="FILE")
    p.add_argument("--grace", type=float, default=1.5, help="SIGTERM to SIGKILL, seconds")
    p.add_argument("--journal", default="", help="site journal for the tether-fenced event")
    p.add_argument("--site", default="")
    p.add_argument("--workload", default="")
    p.add_argument("--incarnation", default="")
    p.add_argument("--token", type=int, default=None)
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARG...]")
    args = p.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        p.error("no COMMAND after --")
    return args


if __name__ == "__main__":
    sys.exit(Tether(parse(sys.argv[1:])).run())
