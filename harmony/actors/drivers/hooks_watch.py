"""The hooks watcher: fences a `hooks` copy when its agent cannot (see `hooks_tether`).

    python -m harmony.actors.drivers.hooks_watch --deadline-file F --timeout T --grace G \\
        --journal J --site S --workload W --incarnation I --token N --containment C \\
        --agent-pid P -- FENCE_COMMAND

The driver starts one per tokened start, in its own session and not tied to the agent (no
parent-death signal): it must outlive a dead agent. It polls F, the copy's own per-token
deadline file, and

* ``released`` (the agent confirmed the copy stopped): exits 0 without fencing;
* the deadline passed with no newer one, or F is missing or unreadable: fences;
* its parent is no longer the agent P (the agent died): fences at once.

Fencing: first SIGKILL every process of this copy's start hook (marked with C, N and
HARMONY_HOOK=start), so a start hook still in flight cannot launch the copy after the fence;
then run FENCE_COMMAND (``/bin/sh -c``, its own process group, killed after T s) until it
exits 0, with backoff; then append a `tether-fenced` event to J and exit `TETHER_FENCED`.
Retries stop early only when F says ``released``. SIGTERM, SIGINT and SIGHUP are ignored (an
agent's service manager stopping "everything" must not silently drop the fence); only SIGKILL
ends a watcher, and the driver uses it for copies confirmed stopped.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from harmony.actors.drivers.containment import CONTAINMENT_ENV
from harmony.actors.drivers.hooks_run import run_shell
from harmony.actors.drivers.hooks_tether import (
    REASON_ENV,
    WATCH_ENV,
    clean_text,
    kill_all,
    marked,
)
from harmony.actors.drivers.tether import TETHER_FENCED, add_tether_args
from harmony.guard import RELEASED, read_deadline_state

POLL = 0.1
"""How often the deadline file and the parent are checked: the delay of a fence on agent death."""
BACKOFF = (0.5, 5.0)
"""First and longest pause between two failed fence attempts."""


class Watcher:
    """One copy's watcher: polls its deadline file and its parent, fences once, exits."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.deadline_file = Path(args.deadline_file)
        self.agent = args.agent_pid if args.agent_pid is not None else os.getppid()

    def say(self, text: str) -> None:
        print(f"[harmony hooks-watch {self.args.workload}] {text}", file=sys.stderr, flush=True)

    def run(self) -> int:
        # A Python handler, not SIG_IGN: handlers are reset by exec, SIG_IGN would be inherited
        # by the fence command (and its timeout could not SIGTERM it).
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: None)
        deadline: float | None = None
        while True:
            state = read_deadline_state(self.deadline_file)
            if state == RELEASED:
                self.say(f"token {self.args.token} released: the agent confirmed the copy stopped")
                return 0
            if os.getppid() != self.agent:
                return self.fence(f"agent gone (pid {self.agent} exited)")
            if not isinstance(state, float):
                return self.fence(f"no fence deadline: {self.deadline_file} missing or unreadable")
            deadline = state if deadline is None else max(deadline, state)
            now = time.monotonic()
            if now >= deadline:
                late = now - deadline
                return self.fence(f"fence deadline passed {late:.2f} s ago with no renewal")
            time.sleep(min(POLL, deadline - now))

    def fence(self, why: str) -> int:
        self.say(f"{why}: fencing token {self.args.token}")
        started, pause, attempt = time.monotonic(), BACKOFF[0], 0
        while True:
            attempt += 1
            self.kill_start_hook()
            ok, how = self.run_fence(why)
            if ok:
                break
            self.say(f"fence attempt {attempt} {how}; again in {pause:g} s")
            if self.released_within(pause):
                self.say("released meanwhile: the agent confirmed the copy stopped")
                return 0
            pause = min(pause * 2, BACKOFF[1])
        took = time.monotonic() - started
        self.say(f"fenced: {how} (attempt {attempt}, {took:.2f} s)")
        self.journal(f"{why}: fence hook ok (attempt {attempt}) in {took:.2f} s")
        return TETHER_FENCED

    def kill_start_hook(self) -> None:
        hook = (
            marked(self.args.containment, self.args.token, "start") if self.args.containment else []
        )
        if hook:
            left = kill_all(hook)
            self.say(f"killed {len(hook) - len(left)} process(es) of the start hook in flight")
            if left:
                self.say(f"start hook processes survived SIGKILL: {left}")

    def run_fence(self, why: str) -> tuple[bool, str]:
        """One run of the fence command; (exited 0, how it ended)."""
        env = {k: v for k, v in os.environ.items() if k != WATCH_ENV}
        if self.args.containment:
            env[CONTAINMENT_ENV] = self.args.containment
        env[REASON_ENV] = clean_text(f"tether: {why}")
        res = run_shell(
            self.args.command,
            env=env,
            out_fd=None,
            timeout=self.args.timeout,
            grace=self.args.grace,
            own_session=False,  # a new group in our session: see `run_shell`
        )
        return res.ok, "fence hook " + res.describe(self.args.timeout)

    def released_within(self, pause: float) -> bool:
        end = time.monotonic() + pause
        while time.monotonic() < end:
            if read_deadline_state(self.deadline_file) == RELEASED:
                return True
            time.sleep(min(POLL, max(0.0, end - time.monotonic())))
        return read_deadline_state(self.deadline_file) == RELEASED

    def journal(self, reason: str) -> None:
        """Fence first, then record: a journal that cannot be written only costs a line."""
        from harmony.actors.journal import record_tether_fenced

        failed = record_tether_fenced(self.args, reason, driver="hooks")
        if failed:
            self.say(failed)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m harmony.actors.drivers.hooks_watch",
        description="Run FENCE_COMMAND when the fence deadline in FILE passes or the agent dies.",
    )
    p.add_argument("--deadline-file", required=True, metavar="FILE")
    p.add_argument("--timeout", type=float, default=30.0, help="per fence attempt, seconds")
    add_tether_args(p)
    p.add_argument("--token", type=int, required=True)
    p.add_argument("--containment", default="", help="the copy's HARMONY_CONTAINMENT id")
    p.add_argument("--agent-pid", type=int, default=None, help="default: the parent")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- FENCE_COMMAND (one string)")
    args = p.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if len(args.command) != 1 or not args.command[0].strip():
        p.error("expected exactly one shell command after --")
    args.command = args.command[0]
    return args


if __name__ == "__main__":
    sys.exit(Watcher(parse(sys.argv[1:])).run())
