"""Rich renderings of the mesh: the actor tree of every site, as `harmony status` prints it,
and the summary first view of a large mesh (from the sites bucket)."""

from __future__ import annotations

import re

import msgspec
from rich.console import Group
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from harmony.actors.messages import ActorInfo, PeerInfo, Snapshot
from harmony.client import rejected_summary
from harmony.mesh.summaries import Summary
from harmony.textsafe import redact_url

STATE_STYLE = {
    "alive": "green",
    "running": "green",
    "suspect": "yellow",
    "starting": "yellow",
    "stopping": "yellow",
    "idle": "cyan",
    "silent": "red",
    "failed": "bold red",
    "fenced": "magenta",
    "exited": "red",
    "stopped": "dim",
    "unknown": "dim",
}


def _state(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, "white"))


ALARM = "bold white on red"


def site_facts(labels: dict[str, str], capacity: int | None = None) -> str:
    """A site's labels and capacity in one line (``jurisdiction=EU region=eu-west
    capacity=2``); "" when it has neither."""
    words = [f"{k}={v}" for k, v in sorted(labels.items())]
    if capacity is not None:
        words.append(f"capacity={capacity}")
    return " ".join(words)


def _actor_label(info: ActorInfo) -> Text:
    name = info.path.rsplit("/", 1)[-1] if "/" in info.path else info.path
    label = Text.assemble((name, "bold"), " ", (f"[{info.kind}]", "dim"), " ", _state(info.state))
    if info.detail.get("doubt") or (info.kind == "workload" and info.state == "unknown"):
        # The copy may still run and no fence has been confirmed: say so before anything else.
        label.append("  FENCE UNCONFIRMED ", style=ALARM)
    if info.restarts:
        label.append(f"  restarts={info.restarts}", style="yellow")
    shown = {k: v for k, v in info.detail.items() if v != ""}
    if shown:
        label.append("  " + " ".join(f"{k}={v}" for k, v in sorted(shown.items())), style="dim")
    if info.policy:
        label.append(f"  ({info.policy})", style="dim italic")
    return label


def site_tree(snap: Snapshot, view_state: str = "alive") -> Tree:
    head = Text.assemble(("site ", "dim"), (snap.site, "bold cyan"), " ", _state(view_state))
    if snap.witness:
        head.append(" witness", style="magenta")
    facts = site_facts(snap.labels, snap.site_capacity)
    if facts:
        head.append(f"  {facts}", style="cyan")
    head.append(f"  nats={redact_url(snap.nats_url)}", style="dim")
    rejected = rejected_summary(snap)
    if rejected:
        head.append(f"  rejected: {rejected}", "yellow")
    tree = Tree(head)
    nodes: dict[str, Tree] = {}
    for info in sorted(snap.actors, key=lambda a: a.path):
        parent_path = info.path.rsplit("/", 1)[0] if "/" in info.path else ""
        # Paths like agent/workload/web hang under agent (there is no "agent/workload" actor).
        while parent_path and parent_path not in nodes:
            parent_path = parent_path.rsplit("/", 1)[0] if "/" in parent_path else ""
        parent = nodes.get(parent_path, tree)
        nodes[info.path] = parent.add(_actor_label(info))
    if snap.peers:
        peers = tree.add(Text("peers", style="dim"))
        for p in snap.peers:
            peers.add(_peer_label(p))
    return tree


def _peer_label(p: PeerInfo) -> Text:
    age = "never" if p.last_heartbeat_age is None else f"{p.last_heartbeat_age:.1f}s ago"
    label = Text.assemble(
        (p.site, "bold"), " ", _state(p.state), (f"  last heartbeat {age}", "dim")
    )
    if p.witness:
        label.append(" witness", style="magenta")
    facts = site_facts(p.labels, p.site_capacity)
    if facts:
        label.append(f"  {facts}", style="cyan")
    return label


def workloads_table(snaps: dict[str, Snapshot]) -> Table | None:
    """Per workload: where it runs, the lease holder, its token and time left on the lease."""
    rows: dict[str, dict[str, list[str]]] = {}
    for site, snap in snaps.items():
        for a in snap.actors:
            parts = a.path.split("/")
            if len(parts) != 3 or parts[1] != "workload":
                continue
            name, d = parts[2], a.detail
            row = rows.setdefault(name, {"strategy": [], "running": [], "holder": [], "left": []})
            row["strategy"] = [d.get("strategy", "")]
            if "slots" in d:  # horizontal: where each slot runs, as its coordinator sees it
                if not row["running"] or d.get("coordinator") == site:
                    row["running"] = [f"{d['replicas']} replicas: {d['slots']}"]
            elif d.get("phase") == "running":
                token = d.get("token", "")
                row["running"].append(f"{site}" + (f" (token {token})" if token else ""))
            if d.get("lease"):
                row["holder"].append(f"{site} @ rev {d['lease']}")
                if d.get("fence_in"):
                    row["left"].append(d["fence_in"])
    if not rows:
        return None
    t = Table(title="workloads", title_justify="left", expand=False)
    for col in ("workload", "strategy", "running on", "lease holder", "holder fences in"):
        t.add_column(col)
    for name in sorted(rows):
        r = rows[name]
        # Every cell is a Text: a str cell would be parsed as Rich markup, and these strings
        # come from the wire ("[link=...]" in a workload name must show as itself).
        running = Text(", ".join(r["running"]) or "nowhere", style="" if r["running"] else "red")
        if len(r["running"]) > 1:
            running.stylize("yellow")
        t.add_row(
            Text(name),
            Text(r["strategy"][0] if r["strategy"] else ""),
            running,
            Text(", ".join(r["holder"]) or "-"),
            Text(", ".join(r["left"]) or "-"),
        )
    return t


def mesh_view(mesh: str, snaps: dict[str, Snapshot]) -> Group:
    """The whole mesh: answering sites, and sites others know of that did not answer."""
    states: dict[str, str] = {}
    for s in snaps.values():
        for p in s.peers:
            if p.site not in snaps or states.get(p.site) != "alive":
                states[p.site] = p.state if p.site not in snaps else "alive"
    root = Tree(Text.assemble(("mesh ", "dim"), (mesh, "bold"), f"  {len(snaps)} site(s) answered"))
    for snap in snaps.values():
        root.add(site_tree(snap))
    for site in sorted(set(states) - set(snaps)):
        root.add(
            Text.assemble(
                ("site ", "dim"),
                (site, "bold"),
                " ",
                _state(states[site]),
                ("  (no answer; state as its peers see it)", "dim"),
            )
        )
    table = workloads_table(snaps)
    return Group(root, table) if table is not None else Group(root)


LABEL_VALUES = 12
"""Label values (key=value, by how many sites carry them) the summary view lists."""
UNHEALTHY_ROWS = 50
"""Unhealthy items shown in the summary view; the rest are counted."""
STALE = "stale"


def _counts_line(title: str, counts: dict[str, int]) -> Text:
    line = Text.assemble((f"{title}: ", "bold"))
    if not counts:
        line.append("none", style="dim")
    for i, (state, n) in enumerate(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))):
        line.append(", " if i else "")
        line.append(f"{n} ", style="bold")
        line.append_text(_state(state))
    return line


def summary_view(mesh: str, found: dict[str, Summary]) -> Group:
    """A large mesh at a glance: sites by state, workloads by phase, what is unhealthy.

    A site whose summary is stale (it stopped writing) counts as `stale` and is unhealthy,
    with the age of its last summary."""
    sites: dict[str, int] = {}
    workloads: dict[str, int] = {}
    labelled: dict[str, int] = {}
    trouble: list[tuple[str, str, str]] = []
    hidden = 0
    for site, s in found.items():
        v = s.value
        state = STALE if s.stale else v.state
        sites[state] = sites.get(state, 0) + 1
        for key, value in v.labels.items():
            labelled[f"{key}={value}"] = labelled.get(f"{key}={value}", 0) + 1
        if s.stale:
            trouble.append((site, "site", f"no summary for {s.age:.0f} s (last: {v.state})"))
            continue
        for phase, n in v.workloads.items():
            workloads[phase] = workloads.get(phase, 0) + n
        trouble += [(site, u.what, u.why) for u in v.unhealthy]
        hidden += v.unhealthy_total - len(v.unhealthy)
    head = Text.assemble(("mesh ", "dim"), (mesh, "bold"), f"  {len(found)} site(s)")
    parts: list[Text | Table] = [
        head,
        _counts_line("sites", sites),
        _counts_line("workloads", workloads),
    ]
    if labelled:
        top = sorted(labelled.items(), key=lambda kv: (-kv[1], kv[0]))[:LABEL_VALUES]
        line = _counts_line("labels (sites)", dict(top))
        if len(labelled) > LABEL_VALUES:
            line.append(f", {len(labelled) - LABEL_VALUES} more", style="dim")
        parts.append(line)
    if trouble or hidden:
        t = Table(title=f"unhealthy ({len(trouble) + hidden})", title_justify="left")
        for col in ("site", "what", "why"):
            t.add_column(col)
        for site, what, why in sorted(trouble)[:UNHEALTHY_ROWS]:
            style = "bold red" if "FENCE UNCONFIRMED" in why or why == "failed" else "yellow"
            t.add_row(Text(site, style="bold"), Text(what), Text(why, style=style))
        more = max(0, len(trouble) - UNHEALTHY_ROWS) + hidden
        if more > 0:
            t.add_row(Text("..."), Text(f"{more} more"), Text(""))
        parts.append(t)
    else:
        parts.append(Text("nothing unhealthy", style="green"))
    parts.append(Text("details: harmony status --site SITE | --workload NAME | --all", style="dim"))
    return Group(*parts)


def site_view(snap: Snapshot) -> Group:
    """One site in detail (`harmony status --site X`)."""
    table = workloads_table({snap.site: snap})
    tree = site_tree(snap)
    return Group(tree, table) if table is not None else Group(tree)


def workload_view(workload: str, snaps: dict[str, Snapshot]) -> Group:
    """One workload on every site it is placed (`harmony status --workload W`): its row of
    the workloads table and its subtree on each site."""
    parts: list[Tree | Table | Text] = []
    prefix = f"agent/workload/{workload}"
    for snap in snaps.values():
        actors = [a for a in snap.actors if _of_workload(a.path, prefix)]
        mine = msgspec.structs.replace(snap, actors=actors, peers=[])
        parts.append(site_tree(mine))
    table = workloads_table(
        {
            site: msgspec.structs.replace(
                snap, actors=[a for a in snap.actors if _of_workload(a.path, prefix, below=False)]
            )
            for site, snap in snaps.items()
        }
    )
    if table is not None:
        parts.append(table)
    for site, snap in snaps.items():  # a cost workload: what its runner decided, and why
        for a in snap.actors:
            if a.path == f"{prefix}/cost" and a.state == "deciding":
                why = f"cost (decided on {site}): prices {a.detail.get('prices', '')}; "
                parts.append(Text(why + a.detail.get("why", "")))
    if not parts:
        parts.append(Text(f"no site answered for workload {workload}", style="red"))
    return Group(*parts)


def _of_workload(path: str, prefix: str, below: bool = True) -> bool:
    """`path` is the workload's actor (with `below`, or one under it), or one of its slots'
    (a horizontal workload ``w`` runs as ``w--0``, ``w--1``, ...)."""
    slot = re.fullmatch(re.escape(prefix) + r"--[0-9]+(/.*)?", path)
    if slot is not None:
        return below or not slot.group(1)
    return path == prefix or (below and path.startswith(prefix + "/"))
