"""Rich renderings of the mesh: the actor tree of every site, as `harmony status` prints it."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from harmony.actors.messages import ActorInfo, PeerInfo, Snapshot
from harmony.client import rejected_summary
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
            if d.get("phase") == "running":
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
