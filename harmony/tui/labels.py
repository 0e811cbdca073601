"""One line of text per tree node, and the event log's lines: Rich `Text`, from the model.

Labels are pure functions of (model, key, now), so the tree can re-label a node in place
whenever anything about it changes (ages tick every second) without rebuilding the tree, and
the snapshot tests get identical output for identical input.
"""

from __future__ import annotations

import time

from rich.text import Text

from harmony.actors.journal import JournalEvent
from harmony.actors.messages import ActorInfo, PeerInfo
from harmony.render import site_facts
from harmony.strategies.registry import abbreviation
from harmony.textsafe import redact_url
from harmony.tui.model import PEER_PREFIX, Key, MeshModel, SiteView

HIGHLIGHT_SECONDS = 3.0
HIGHLIGHT_STYLE = "on #5f5f00"
GREY = "grey50"

STATE_STYLE = {
    "alive": "green",
    "running": "green",
    "held": "green",
    "suspect": "yellow",
    "starting": "yellow",
    "stopping": "yellow",
    "mute": "yellow",
    "idle": "cyan",
    "silent": "bold red",
    "isolated": "bold red",
    "failed": "bold red",
    "fenced": "magenta",
    "exited": "red",
    "stopped": "dim",
    "unknown": "dim",
}

KIND_LABEL = {
    "agent": "agent",
    "site": "site",
    "peers": "peers",
    "workload-supervisor": "workload",
    "lease": "lease",
    "workload": "run",
}

ALARM = "bold white on red"
"""A copy whose state is unknown (it may run): what an operator must see at once."""


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, "white"))


def seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f}s" if value < 100 else f"{value:.0f}s"


def node_label(model: MeshModel, key: Key, now: float) -> Text:
    """The label of any node; greyed when its site did not answer the latest poll, and
    highlighted for a few seconds after a significant change."""
    view = model.sites.get(key.site)
    if view is None:
        return Text(key.site)
    if key.path == "":
        label = site_label(view, now)
    elif key.path.startswith(PEER_PREFIX):
        peer = view.peer(key.peer)
        label = peer_label(peer, view, now) if peer else Text(key.peer)
    else:
        info = view.actor(key.path)
        label = actor_label(info, view, now) if info else Text(key.path)
    if not view.answered and model.polls:
        label = Text(label.plain, style=GREY)
        if key.path == "":  # greyed, but the site's state stays readable at a glance
            start = len(view.name) + 1
            label.stylize(STATE_STYLE.get(view.state, ""), start, start + len(view.state))
    changed = model.changed_at.get(key)
    if changed is not None and now - changed < HIGHLIGHT_SECONDS:
        label.stylize(HIGHLIGHT_STYLE)
    return label


def mesh_label(model: MeshModel, connection: str, now: float) -> Text:
    label = Text.assemble(("mesh ", "dim"), (model.mesh, "bold"))
    counts = model.counts()
    if counts:
        label.append("  ")
        label.append(f"{len(model.sites)} sites: ")
        for i, (state, n) in enumerate(counts.items()):
            if i:
                label.append(", ")
            label.append(f"{n} ")
            label.append_text(state_text(state))
    if connection != "connected":
        label.append(f"  [{connection}]", style="bold red")
    elif model.last_poll is not None:
        label.append(f"  polled {seconds(max(0.0, now - model.last_poll))} ago", style="dim")
    return label


def site_label(view: SiteView, now: float) -> Text:
    label = Text.assemble((view.name, "bold cyan"), " ", state_text(view.state))
    if view.witness:
        label.append(" witness", style="magenta")
    if view.snapshot is not None:
        facts = site_facts(view.snapshot.labels, view.snapshot.site_capacity)
        if facts:
            label.append(f"  {facts}", style="cyan")
    age = view.heartbeat_age(now)
    if age is not None:
        label.append(f"  hb {seconds(age)} ago", style="dim")
    if not view.answered and view.received is not None:
        label.append(
            f"  no answer for {seconds(now - view.received)}: last known state", style="dim"
        )
    elif view.snapshot is not None and view.snapshot.nats_url:
        label.append(f"  nats {redact_url(view.snapshot.nats_url)}", style="dim")
    return label


def peer_label(peer: PeerInfo, view: SiteView, now: float) -> Text:
    label = Text.assemble(("sees ", "dim"), (peer.site, "bold"), " ", state_text(peer.state))
    if peer.witness:
        label.append(" witness", style="magenta")
    if peer.last_heartbeat_age is not None:
        age = peer.last_heartbeat_age + _elapsed(view, now)
        label.append(f"  hb {seconds(age)} ago", style="dim")
    return label


def actor_label(info: ActorInfo, view: SiteView, now: float) -> Text:
    name = info.path.rsplit("/", 1)[-1]
    kind = KIND_LABEL.get(info.kind, info.kind)
    d = info.detail
    if info.kind == "workload-supervisor":
        label = Text.assemble((name, "bold"), " ")
        label.append(abbreviation(d.get("strategy", "")), "cyan")
        if d.get("role"):
            label.append(f" {d['role']}", "bold")
        label.append(" ")
        if d.get("doubt"):
            label.append(" FENCE UNCONFIRMED ", ALARM)
            _field(label, "why", d["doubt"][:60], "bold red")
            _field(label, "attempts", d.get("fence_attempts"))
        else:
            label.append_text(state_text(d.get("phase") or info.state))
        if d.get("active") == "true":
            label.append(" ● active", "bold green")
        _field(label, "token", d.get("token"))
        if d.get("lease_seen") and d.get("lease_seen") != "unknown":
            _field(label, "lease", d["lease_seen"])
        fence_in = _fence_in(d.get("fence_in", ""), view, now)
        if fence_in is not None:
            _field(label, "lease left", seconds(fence_in), "yellow" if fence_in < 2 else "")
    else:
        label = Text.assemble((name, "bold"), " ")
        if kind != name:  # agent, site, peers, lease and run are named after their kind
            label.append(f"[{kind}] ", "dim")
        unsure = info.kind == "workload" and info.state == "unknown"
        label.append_text(Text(" UNKNOWN ", ALARM) if unsure else state_text(info.state))
        for f, title in _FIELDS.get(info.kind, ()):
            _field(label, title, d.get(f))
        if info.kind == "workload" and d.get("last") and info.state not in ("running",):
            _field(label, "last", d["last"][:60])
    if info.restarts:
        label.append(f"  restarts {info.restarts}", style="bold yellow")
    return label


_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "lease": (("holder", "holder"), ("token", "token"), ("seen", "seen"), ("seen_revision", "rev")),
    "workload": (("pid", "pid"), ("token", "token"), ("exit_code", "exit")),
    "site": (("load1", "load"), ("cpus", "cpus"), ("heartbeats", "beats")),
    "peers": (("alive", "alive"), ("suspect", "suspect"), ("silent", "silent")),
    "agent": (),
    "horizontal": (
        ("replicas", "replicas"),
        ("slots", "slots"),
        ("coordinator", "coordinator"),
        ("why", "why"),
    ),
}


def _field(label: Text, title: str, value: str | None, style: str = "") -> None:
    if value:
        label.append(f"  {title} ", style="dim")
        label.append(value, style=style)


def _elapsed(view: SiteView, now: float) -> float:
    """Seconds since this site's snapshot arrived: ages in it grow by this much."""
    return max(0.0, now - view.received) if view.received is not None else 0.0


def _fence_in(value: str, view: SiteView, now: float) -> float | None:
    """The holder's time left before it must fence: the lease's remaining life as the
    holder counts it (the server keeps the key `fence_margin` longer)."""
    if not value or not view.answered:
        return None
    try:
        left = float(value.rstrip("s"))
    except ValueError:
        return None
    return max(0.0, left - _elapsed(view, now))


def clock_text(wall: float) -> str:
    """Event times in UTC: sites of one mesh may sit in different time zones."""
    return time.strftime("%H:%M:%S", time.gmtime(wall)) + f".{int(wall * 10) % 10}"


def event_line(event: JournalEvent, *, compact: bool = False) -> Text:
    """One event: time, site, workload, kind, reason, token (compact: without site and
    workload, for the detail pane, which shows one site's or workload's events only)."""
    line = Text.assemble((clock_text(event.wall), "dim"), " ")
    if not compact:
        line.append(f"{event.site:<8}", "cyan")
        line.append(" ")
        line.append(f"{event.workload or '-':<10}", "bold")
        line.append(" ")
    style = "bold red" if "fail" in event.kind or "silent" in event.kind else ""
    if event.kind.startswith("tui-"):
        style = "bold magenta"
    label = Text(event.kind, style=style or "yellow")
    line.append_text(label)
    line.append(f"  {event.reason}")
    if event.token is not None:
        line.append(f"  token {event.token}", style="dim")
    return line
