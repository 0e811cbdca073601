"""Hook scripts for `hooks`-driver workloads in simulations, with faults on demand.

    python -m harmony.sim.hook_scripts start|stop|fence|probe --dir D [-- COMMAND...]

(Like the driver, callers must not wait for the end of `start`'s output: the daemon keeps
the hook's stdout and stderr, the workload's log.)

`start` launches COMMAND (default: the example workload) as a daemon in a session of its
own (``setsid``), with the hook's environment (site, workload, token, fence deadline file,
records, ledger, containment marker), and writes ``D/<workload>.pid``; `stop` and `fence`
SIGTERM its process group, SIGKILL it after a grace, and return once it is gone; `probe`
exits 0 iff it runs. A copy is the daemon, not the hook: like an operator's real scripts,
these return at once and leave the workload running.

Flag files in D inject faults (the simulation's `flag` steps create them):

* ``probe-fail``: probe exits 1 even though the copy runs;
* ``stop-fail``: stop exits 1 without stopping anything;
* ``fence-hang``: fence never returns (the driver's hook timeout kills it);
* ``start-fail``: start exits 1 without starting.
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

from harmony import procfs

GRACE = 2.0
"""Seconds between SIGTERM and SIGKILL."""
GONE_WAIT = 10.0
CONTAINMENT_ENV = "HARMONY_CONTAINMENT"
"""`harmony.actors.drivers.containment.CONTAINMENT_ENV`, not imported: a probe runs twice
a second, and importing the drivers package would triple its start-up (a test pins it)."""
HOOK_ENV = ("HARMONY_HOOK", "HARMONY_REASON")
"""What the driver sets for the hook only: the daemon outlives the hook."""


def _say(text: str) -> None:
    # Unbuffered, errors ignored: the log may sit on a full disk (holder-disk-full), and a
    # buffered line that cannot be flushed at exit would turn a done job into exit 120.
    line = f"[hook_scripts {os.environ.get('HARMONY_WORKLOAD', '?')}] {text}\n"
    with contextlib.suppress(OSError):
        os.write(1, line.encode())


def _starttime(pid: int) -> str:
    """The process's start time (clock ticks since boot): tells a reused pid apart."""
    st = procfs.stat(pid)
    return str(st.start) if st is not None and st.alive else ""  # a zombie runs nothing


def pid_file(d: Path) -> Path:
    return d / f"{os.environ.get('HARMONY_WORKLOAD', 'workload')}.pid"


def running(d: Path) -> int | None:
    """The pid of this workload's daemon if it still runs, else None."""
    try:
        pid_text, started = pid_file(d).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return pid if _starttime(pid) == started else None


def start(d: Path, command: list[str]) -> int:
    if (d / "start-fail").exists():
        _say("start-fail flag: not starting")
        return 1
    pid = running(d)
    if pid is not None:
        # A second copy of one workload on one site would hide an old token behind a new one.
        _say(f"a copy already runs (pid {pid}): not starting another")
        return 1
    env = {k: v for k, v in os.environ.items() if k not in HOOK_ENV}
    proc = subprocess.Popen(
        command, env=env, stdin=subprocess.DEVNULL, start_new_session=True, close_fds=True
    )
    tmp = pid_file(d).with_suffix(".tmp")
    tmp.write_text(f"{proc.pid} {_starttime(proc.pid)}\n")
    tmp.replace(pid_file(d))
    _say(f"started pid {proc.pid} (token {env.get('HARMONY_FENCING_TOKEN', '-')})")
    return 0


def stop(d: Path, kind: str) -> int:
    if kind == "fence" and (d / "fence-hang").exists():
        _say("fence-hang flag: hanging")
        while True:
            time.sleep(3600)
    if kind == "stop" and (d / "stop-fail").exists():
        _say("stop-fail flag: exiting 1, nothing stopped")
        return 1
    pid = running(d)
    if pid is None:
        _say(f"{kind}: nothing runs")
        return 0
    for sig, wait in ((signal.SIGTERM, GRACE), (signal.SIGKILL, GONE_WAIT)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)  # the daemon leads its own session and group
        deadline = time.monotonic() + wait
        while running(d) is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        if running(d) is None:
            _say(f"{kind}: pid {pid} is gone")
            with contextlib.suppress(FileNotFoundError):
                pid_file(d).unlink()
            return 0
    _say(f"{kind}: pid {pid} survived SIGKILL")
    return 1


def probe(d: Path) -> int:
    if (d / "probe-fail").exists():
        _say("probe-fail flag: reporting down")
        return 1
    return 0 if running(d) is not None else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harmony.sim.hook_scripts", description=__doc__)
    p.add_argument("action", choices=("start", "stop", "fence", "probe"))
    p.add_argument("--dir", required=True, help="flag files and pid files live here")
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = p.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    if not os.environ.get(CONTAINMENT_ENV):
        _say(f"warning: no {CONTAINMENT_ENV} in the environment")
    if args.action == "start":
        return start(d, command or [sys.executable, "-m", "harmony.sim.example_workload"])
    if args.action == "probe":
        return probe(d)
    return stop(d, args.action)


if __name__ == "__main__":
    sys.exit(main())
