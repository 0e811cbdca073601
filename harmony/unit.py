"""`harmony unit`: the systemd service unit that runs one site's agent.

The unit is derived from the site config, so the numbers in it (how long a stop may take) follow
the config's timings instead of being guessed by whoever installs it. The choices that matter
for safety are explained in the unit itself, where an operator who edits it will read them.
"""

from __future__ import annotations

import math
import pwd
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from harmony.config import SiteConfig
from harmony.exits import EXIT_CONFIG

ACTOR_STOP = 60.0
"""How long the agent waits for its actor tree to stop (`Runtime.stop`), after the drain."""
SHUTDOWN_SLACK = 15.0
"""Closing the bridge, the mesh connection and the embedded nats-server, and the journal."""
RESTART_SEC = 5
"""A crashed agent restarts after this long: its embedded server's ports are free by then."""


@dataclass(frozen=True)
class UnitSpec:
    """What a unit needs besides the config: how to start the agent, and as whom."""

    config_path: Path
    command: tuple[str, ...]
    user: str | None
    """None: the agent runs as root (no ``User=``)."""


def unit_name(cfg: SiteConfig) -> str:
    return f"harmony-{cfg.mesh}-{cfg.site}.service"


def drain_seconds(cfg: SiteConfig) -> float:
    """The agent's graceful stop: each workload stops its copy and releases its lease
    (`Runtime.drain` allows this long), then the actor tree and the server stop."""
    t = cfg.timings
    return t.stop_grace + 2 * t.renew_interval + 5


def stop_timeout(cfg: SiteConfig) -> int:
    """``TimeoutStopSec``: long enough for the whole graceful stop, so systemd's SIGKILL only
    ever ends an agent that hung (and then the copies die with it, which is safe)."""
    return math.ceil(drain_seconds(cfg) + ACTOR_STOP + SHUTDOWN_SLACK)


def default_user(cfg: SiteConfig, config_path: Path) -> str | None:
    """The owner of the data directory if it exists, else of the config file; None for root.

    The agent refuses a data directory owned by another user, so its owner is who must run it.
    """
    where = cfg.data_path if cfg.data_path.exists() else config_path
    name = pwd.getpwuid(where.stat().st_uid).pw_name
    return None if name == "root" else name


def agent_command(config_path: Path) -> tuple[str, ...]:
    """This interpreter running the agent: the unit uses the installation it was printed by."""
    return (sys.executable, "-m", "harmony", "agent", "--config", str(config_path))


READ_ONLY_UNDER_FULL = ("/usr", "/boot", "/efi", "/etc")
"""What ``ProtectSystem=full`` mounts read-only."""
TEMP_DIRS = ("/tmp", "/var/tmp")


def _under(path: Path, roots: tuple[str, ...]) -> bool:
    return any(path == Path(r) or Path(r) in path.parents for r in roots)


def sandbox_paths(cfg: SiteConfig, spec: UnitSpec) -> str:
    """``ReadWritePaths`` and ``PrivateTmp`` lines that keep the agent's own files reachable:
    a data directory below /etc stays writable, and a site that lives in /tmp (a trial)
    keeps the real /tmp instead of a private one that would hide its files."""
    data = cfg.data_path.resolve()
    lines = []
    if _under(data, READ_ONLY_UNDER_FULL):
        lines.append(f"ReadWritePaths={data}")
    if _under(data, TEMP_DIRS) or _under(spec.config_path, TEMP_DIRS):
        lines.append("# no PrivateTmp: this site's files are in a temporary directory")
    else:
        lines.append("PrivateTmp=yes")
    return "\n".join(lines)


def render_unit(cfg: SiteConfig, spec: UnitSpec) -> str:
    name = unit_name(cfg)
    user = f"User={spec.user}" if spec.user else "# no User=: the data directory belongs to root"
    return f"""\
# {name}: the Harmony Mesh agent of site {cfg.site!r}, mesh {cfg.mesh!r}.
# Printed by `harmony unit --config {spec.config_path}`. Install and start:
#   harmony unit --config {spec.config_path} | sudo tee /etc/systemd/system/{name}
#   sudo systemctl daemon-reload && sudo systemctl enable --now {name}
[Unit]
Description=Harmony Mesh agent, site {cfg.site} of mesh {cfg.mesh}
Wants=network-online.target
After=network-online.target

[Service]
Type=exec
ExecStart={shlex.join(spec.command)}
{user}
Environment=PYTHONUNBUFFERED=1
LimitNOFILE=65536

# A crash or a lost mesh (exit 1, 3, a signal) restarts the agent; a configuration the
# mesh refuses (exit 2) does not: it would be refused again every {RESTART_SEC} s.
Restart=on-failure
RestartSec={RESTART_SEC}
RestartPreventExitStatus={EXIT_CONFIG}

# Stopping is the agent's job, not systemd's. KillMode=mixed sends SIGTERM to the agent
# alone: it stops each copy in order (SIGTERM, SIGKILL after stop_grace), releases each
# lease so a standby takes over at once, and exits. Only then does systemd SIGKILL what is
# left in the unit's cgroup, which is nothing after a clean stop.
# Not control-group (the default): it would signal the copies and their tethers at the
# same moment as the agent, so a copy would die behind its strategy's back and read as a
# crash, and a tether could be killed before the copy it guards.
# Not process: a stop would leave copies running under their tethers until the fence
# deadline; safe, but the unit would report stopped with workloads still running.
# If the agent hangs or crashes, a copy is never left without a fence: its tether stops
# it at the deadline the agent last confirmed, and systemd's SIGKILL of what is left in
# the cgroup (after TimeoutStopSec for a hung agent) only makes that sooner.
KillMode=mixed
TimeoutStopSec={stop_timeout(cfg)}
# The process driver puts each copy in a cgroup of its own below the agent's, so that a
# copy's every process is found and killed (harmony/actors/drivers/cgroup.py).
Delegate=yes

# Sandboxing that no driver minds: workloads are arbitrary programs, so nothing that a
# hook or a process may legitimately need (its own users, namespaces for a container
# runtime, setuid helpers) is taken away. Tighten per site with a drop-in:
#   systemctl edit {name}
# Not set, on purpose: ProtectControlGroups (the agent writes its copies' cgroups),
# NoNewPrivileges and RestrictNamespaces (a hook may run sudo or a container runtime),
# ProtectHome (a workload may live in a home directory).
ProtectSystem=full
{sandbox_paths(cfg, spec)}
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectHostname=yes
RestrictRealtime=yes
LockPersonality=yes

[Install]
WantedBy=multi-user.target
"""


def unit_for(config_path: str | Path, user: str | None = None) -> str:
    """The unit text for the site config at `config_path` (loaded and validated)."""
    from harmony.config import load_config

    path = Path(config_path).resolve()
    cfg = load_config(path)
    who = user if user is not None else default_user(cfg, path)
    return render_unit(cfg, UnitSpec(path, agent_command(path), None if who == "root" else who))


def check_user(name: str) -> str | None:
    """Why `name` cannot be a unit's ``User=``, or None."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        return f"no such user {name!r} on this machine"
    return None
