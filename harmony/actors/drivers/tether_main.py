"""The keeper process (see `harmony.actors.drivers.tether` for why it exists).

Kept apart from the helpers the agent imports, so that running it with ``-m`` loads only
this module and what it needs. One keeper runs per copy (1,200 on a machine running 60 sites
of 20 workloads), so what it loads is kept small: no `dataclasses` (it loads `inspect`),
`pathlib`, `subprocess`, `argparse`, `typing`, `re` or `sqlite3` (each a megabyte or more of
every keeper; tests/drivers/test_keeper_imports.py holds the line). What a fence needs is
loaded at the start, never during one; `argparse` only for ``--help`` and bad arguments.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import sys
import time

from harmony.actors.drivers.cgroup import Cgroup
from harmony.actors.drivers.containment import Containment, describe, set_subreaper
from harmony.actors.drivers.tether_cli import (
    TETHER_FENCED,
    TETHER_OPTIONS,
    Args,
    Option,
    quick_parse,
)
from harmony.guard import read_deadline

TYPE_CHECKING = False  # not `typing`'s (see the module docstring)
if TYPE_CHECKING:
    from types import FrameType

POLL = 0.25
"""How often the deadline file and the parent pid are read again (a pidfd of the agent and
SIGCHLD wake the keeper at once where the kernel has them)."""
IDLE_POLL = 5.0
"""The same with no deadline file and a pidfd of the agent: nothing then needs a poll (the
agent's end and COMMAND's wake the keeper at once), and a mesh of a thousand copies on one
machine spent most of a core in keepers waking four times a second for nothing."""


class Keeper:
    def __init__(self, args: Args) -> None:
        self.args = args
        self.me = os.getpid()
        self.agent = args.agent_pid or os.getppid()
        self.deadline_file: str | None = args.deadline_file or None
        cgroup = Cgroup(args.cgroup) if args.cgroup else None
        self.box = Containment(args.containment, cgroup, tree_root=self.me)
        self.terminated_at: float | None = None
        """When the driver's stop (a SIGTERM to every member) reached us."""
        self.status: int | None = None
        """COMMAND's exit status once reaped (negative: killed by that signal)."""
        self.child = 0

    def say(self, text: str) -> None:
        print(f"[harmony keeper {self.args.workload}] {text}", file=sys.stderr, flush=True)

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        if self.terminated_at is None:
            self.terminated_at = time.monotonic()

    def run(self) -> int:
        # A Python handler, not SIG_IGN: handlers are reset by exec, SIG_IGN is inherited.
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_term)
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)  # SIGCHLD (and SIGTERM) end the select below
        signal.signal(signal.SIGCHLD, lambda *_: None)
        if not self.box.enter() and self.args.cgroup:
            self.say(f"containment falls back to {self.box.mechanism}")
        if not set_subreaper():
            self.say("cannot become a child subreaper: orphaned daemons escape to init")
        agent_fd = _pidfd(self.agent)
        _trim_heap()
        if os.getppid() != self.agent:
            self.say(f"not starting: agent {self.agent} is gone already")
            return TETHER_FENCED
        deadline = None
        if self.deadline_file is not None:
            deadline = read_deadline(self.deadline_file)
            if deadline is None or time.monotonic() >= deadline:
                why = "no fence deadline" if deadline is None else "fence deadline already passed"
                self.say(f"not starting: {why} in {self.deadline_file}")
                return TETHER_FENCED
        if self.terminated_at is not None:  # stopped while we set up: nothing to start
            self.say("not starting: stopped before the start")
            return self.mirror(-signal.SIGTERM)
        try:
            self.child = spawn(self.args.command, self.args.cwd or None)
        except OSError as e:
            self.say(f"cannot start {self.args.command[0]}: {e.strerror or e}")
            return 127
        while True:
            self._reap()
            if self.status is not None:
                return self.finish(self.status)
            if os.getppid() != self.agent:
                why = f"agent gone: pid {self.agent} ended (parent now {os.getppid()})"
                return self.fence(why)
            now = time.monotonic()
            if deadline is not None:
                fresh = read_deadline(self.deadline_file) if self.deadline_file else None
                if fresh is None:
                    return self.fence("fence deadline file removed or released (agent confirmed)")
                deadline = max(deadline, fresh)
                if now >= deadline:
                    return self.fence("fence deadline passed with no renewal (agent silent)")
            if deadline is not None:
                timeout = min(POLL, max(0.0, deadline - now))
            else:
                timeout = IDLE_POLL if agent_fd >= 0 else POLL
            fds = [wake_r] + ([agent_fd] if agent_fd >= 0 else [])
            ready, _, _ = select.select(fds, [], [], timeout)
            if agent_fd in ready:  # the agent ended: readable for good, keep the poll only
                agent_fd = -1
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 512)

    def _reap(self) -> None:
        """Reap every child (COMMAND and the orphans re-parented to us); note COMMAND's end."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.child:
                self.status = os.waitstatus_to_exitcode(status)

    def finish(self, code: int) -> int:
        """COMMAND ended: the copy ends with it. Kill what is left, then exit as it did."""
        if self.terminated_at is not None:  # a stop: the rest gets what is left of the grace
            self.box.wait_empty(max(0.0, self.terminated_at + self.args.grace - time.monotonic()))
        result = self.box.kill()
        self._reap()
        if not result.confirmed:
            n = len(result.survivors)
            self.say(f"{n} processes survived SIGKILL: {describe(result.survivors)}")
        elif result.found:
            self.say(f"killed what {self.args.command[0]} left: {describe(result.found)}")
        return self.mirror(code)

    def mirror(self, code: int) -> int:
        """Exit as COMMAND did: its status, or the signal that killed it."""
        if code < 0:
            signal.set_wakeup_fd(-1)
            with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler to reset
                signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
        return code

    def fence(self, why: str) -> int:
        self.say(f"{why}: fencing the workload")
        started = time.monotonic()
        self.box.signal(signal.SIGTERM)
        how = "terminated by SIGTERM"
        confirmed = self.box.wait_empty(self.args.grace)
        if not confirmed:
            result = self.box.kill()
            confirmed = result.confirmed
            how = f"killed by SIGKILL after {self.args.grace:g} s grace"
            if not confirmed:
                n = len(result.survivors)
                how = f"{n} processes survived SIGKILL: {describe(result.survivors)}"
        self._reap()
        if confirmed:  # the agent may be gone for good: leave no empty cgroup behind
            self.box.remove()
        took = time.monotonic() - started
        self.say(f"{how} in {took:.2f} s")
        self.journal(f"{why}: {how} in {took:.2f} s")
        return TETHER_FENCED

    def journal(self, reason: str) -> None:
        """Fence first, then record: a journal that cannot be written only costs a line."""
        from harmony.actors.journal import record_tether_fenced

        failed = record_tether_fenced(self.args, reason)
        if failed:
            self.say(failed)


def _trim_heap() -> None:
    """Hand back to the kernel the heap pages the imports used and freed (the compiled
    modules read before they were loaded): 0.35-0.45 MB of each keeper. glibc only."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def _pidfd(pid: int) -> int:
    """A pidfd that becomes readable when `pid` ends, or -1 (then the poll alone notices)."""
    try:
        return os.pidfd_open(pid)
    except (OSError, AttributeError):
        return -1


def spawn(command: list[str], cwd: str | None) -> int:
    """Start `command` (looked up in PATH) in `cwd` as ``subprocess.Popen`` would, and return
    its pid; raise OSError as Popen does when the directory or the program cannot be used.

    The child, before its exec: SIGPIPE, SIGXFZ and SIGXFSZ back to their defaults (Python
    ignores them; an ignored signal stays ignored across exec: Popen's ``restore_signals``),
    every file descriptor but 0, 1 and 2 closed (Popen's ``close_fds``). The exec's error comes
    back through a close-on-exec pipe: nothing read means the exec happened.
    """
    err_r, err_w = os.pipe()  # both close-on-exec
    try:
        pid = os.fork()
    except BaseException:
        os.close(err_r)
        os.close(err_w)
        raise
    if pid == 0:  # the child: exec or report why not, never return
        code = 0
        try:
            for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ"):
                if hasattr(signal, name):
                    signal.signal(getattr(signal, name), signal.SIG_DFL)
            if cwd:
                os.chdir(cwd)
            _close_fds(keep=err_w)
            os.execvp(command[0], command)
        except OSError as e:
            code = e.errno or 0
        finally:
            try:
                os.write(err_w, b"%d" % code)
            finally:
                os._exit(127)
    os.close(err_w)
    try:
        report = b""
        while chunk := os.read(err_r, 64):
            report += chunk
    finally:
        os.close(err_r)
    if not report:
        return pid
    os.waitpid(pid, 0)
    code = int(report) if report.isdigit() else 0
    raise OSError(code, os.strerror(code) if code else "cannot start the program", command[0])


def _close_fds(keep: int) -> None:
    """Close every descriptor above 2 but `keep` (in the child, before its exec)."""
    try:
        fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:
        os.closerange(3, keep)
        os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))
        return
    for fd in fds:
        if fd > 2 and fd != keep:
            with contextlib.suppress(OSError):
                os.close(fd)


KEEPER_OPTIONS: tuple[Option, ...] = (
    ("--containment", {"required": True, "metavar": "ID", "help": "the copy's id"}),
    ("--agent-pid", {"type": int, "default": 0, "help": "fence when this parent is gone"}),
    ("--cgroup", {"default": "", "metavar": "DIR", "help": "cgroup v2 directory to enter"}),
    ("--cwd", {"default": "", "metavar": "DIR", "help": "COMMAND's working directory"}),
    ("--deadline-file", {"default": "", "metavar": "FILE", "help": "fence deadline"}),
    *TETHER_OPTIONS,
    ("--token", {"type": int, "default": None}),
)
"""The keeper's options (``add_argument`` keywords), for both parsers below."""


def parse(argv: list[str]) -> Args:
    """The keeper's arguments. The argv `tether.tether_argv` writes is read by `quick_parse`
    (argparse alone costs each keeper 1.6 MB); anything else (``--help``, a bad argument) goes
    to argparse, which reads it the same way or says what is wrong as it always did."""
    quick = quick_parse(argv, KEEPER_OPTIONS)
    if quick is not None:
        return quick
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m harmony.actors.drivers.tether_main",
        description="Run COMMAND as one contained copy; fence it when its agent dies or its "
        "fence deadline passes.",
    )
    for flag, keywords in KEEPER_OPTIONS:
        p.add_argument(flag, **keywords)  # type: ignore[arg-type]
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARG...]")
    args = p.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        p.error("no COMMAND after --")
    return Args(**vars(args))


if __name__ == "__main__":
    sys.exit(Keeper(parse(sys.argv[1:])).run())
