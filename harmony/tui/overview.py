"""A large mesh in the TUI: the summary first, one line per site, details on demand.

Above `SMALL_MESH` sites the TUI is fed by the sites bucket (`harmony.mesh.summaries`)
instead of every site's snapshot: the root's detail pane shows the mesh at a glance (sites
by state, workloads by phase, what is unhealthy), each site is one collapsed line made from
its summary, and a site's own actor tree appears (asked of that site alone) while it is
expanded. Pure functions of the model, like `harmony.tui.labels`.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import TypeVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from harmony.mesh.summaries import Summary
from harmony.render import site_facts
from harmony.tui import labels
from harmony.tui.model import STALE, Key, MeshModel

UNHEALTHY_ROWS = 30
"""Unhealthy items listed in the summary pane; the rest are counted."""
SITE_UNHEALTHY_ROWS = 10
T = TypeVar("T")


def node_label(model: MeshModel, key: Key, now: float) -> Text:
    """A tree node's label: a large mesh's sites from their summaries, the rest as always."""
    if model.large and key.path == "":
        return site_label(model, key.site, now)
    return labels.node_label(model, key, now)


def remembered(model: MeshModel, what: object, inputs: object, make: Callable[[], T]) -> T:
    """`make()`, or what it made last time for `what` if its `inputs` are equal."""
    kept = model.memo.get(what)
    if kept is not None and kept[0] == inputs:
        return kept[1]  # type: ignore[return-value]
    made = make()
    model.memo[what] = (inputs, made)
    return made


def site_label(model: MeshModel, site: str, now: float) -> Text:
    """`s0042 running  20 workloads: 10 running, 10 stopped  peers 5 alive  ! 2 unhealthy`"""
    view = model.sites.get(site)
    summary = model.summaries.get(site)
    if summary is None or summary.stale:  # its age moves: made anew
        return _site_label(model, site, now)
    inputs = (
        summary.value,  # not its age: the label shows none while it is fresh
        view.state if view else None,
        site in model.expanded,
        view is not None and view.snapshot is not None,
        view is not None and view.answered,
    )
    return remembered(model, ("label", site), inputs, lambda: _site_label(model, site, now))


def _site_label(model: MeshModel, site: str, now: float) -> Text:
    view = model.sites.get(site)
    summary = model.summaries.get(site)
    state = view.state if view is not None else "unknown"
    label = Text.assemble((site, "bold cyan"), " ", labels.state_text(state))
    if summary is None:
        return label
    v = summary.value
    if v.witness:
        label.append(" witness", style="magenta")
    facts = site_facts(v.labels, v.site_capacity)
    if facts:
        label.append(f"  {facts}", style="cyan")
    if summary.stale:
        age = summary.age + max(0.0, now - (model.last_poll or now))
        label.append(f"  no summary for {labels.seconds(age)} (last: {v.state})", "dim")
        return label
    placed = sum(v.workloads.values())
    if placed:
        label.append(f"  {placed} workload{'s' if placed != 1 else ''}: ", "dim")
        label.append_text(counts_text(v.workloads))
    if v.peers:
        label.append("  peers ", "dim")
        label.append_text(counts_text(v.peers))
    if v.unhealthy_total:
        label.append(f"  ! {v.unhealthy_total} unhealthy", "bold red")
    if site in model.expanded and view is not None and view.snapshot is None:
        label.append("  fetching its actor tree…", "dim")
    elif site in model.expanded and view is not None and not view.answered:
        label.append("  no answer: last known tree", "yellow")
    return label


def counts_text(counts: dict[str, int]) -> Text:
    """`10 running, 9 stopped`, the largest count first."""
    out = Text()
    for i, (state, n) in enumerate(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))):
        out.append(", " if i else "")
        out.append(f"{n} ")
        out.append_text(labels.state_text(state))
    return out


def root_label(model: MeshModel, connection: str, now: float) -> Text:
    """`mesh big  1000 sites: 990 running, 10 stale  filter "s01"  read 0.4s ago`"""
    if not model.large:
        return labels.mesh_label(model, connection, now)
    label = Text.assemble(("mesh ", "dim"), (model.mesh, "bold"))
    label.append(f"  {len(model.summaries)} sites: ")
    label.append_text(counts_text(site_counts(model.summaries)))
    if model.filter_text:
        shown = sum(1 for name in model.sites if model.shown(name))
        label.append("  filter ", "dim")
        label.append(model.filter_text, "bold yellow")
        label.append(f" ({shown} shown)", "dim")
    if connection != "connected":
        label.append(f"  [{connection}]", style="bold red")
    elif model.last_poll is not None:
        label.append(f"  read {labels.seconds(max(0.0, now - model.last_poll))} ago", "dim")
    return label


def site_counts(found: dict[str, Summary]) -> dict[str, int]:
    return dict(collections.Counter(STALE if s.stale else s.value.state for s in found.values()))


def workload_counts(found: dict[str, Summary]) -> dict[str, int]:
    out: collections.Counter[str] = collections.Counter()
    for s in found.values():
        if not s.stale:
            out.update(s.value.workloads)
    return dict(out)


def unhealthy(found: dict[str, Summary]) -> tuple[list[tuple[str, str, str]], int]:
    """(site, what, why) of everything unhealthy (a stale site is), and how many more the
    summaries counted without listing."""
    trouble: list[tuple[str, str, str]] = []
    hidden = 0
    for site, s in found.items():
        v = s.value
        if s.stale:
            trouble.append((site, "site", f"no summary for {s.age:.0f} s (last: {v.state})"))
            continue
        trouble += [(site, u.what, u.why) for u in v.unhealthy]
        hidden += v.unhealthy_total - len(v.unhealthy)
    return sorted(trouble), hidden


def summary_renderable(model: MeshModel) -> RenderableType:
    """The root's detail pane on a large mesh: the mesh at a glance (the same object while
    the summaries are: the pane is not redrawn every second)."""
    inputs = [(site, s.value, s.stale) for site, s in model.summaries.items()]
    return remembered(model, "summary", inputs, lambda: _summary(model))


def _summary(model: MeshModel) -> RenderableType:
    found = model.summaries
    parts: list[RenderableType] = [
        Text.assemble(("mesh ", "dim"), (model.mesh, "bold"), f"  {len(found)} sites"),
        Text.assemble(("sites: ", "bold"), counts_text(site_counts(found))),
        Text.assemble(("workloads: ", "bold"), counts_text(workload_counts(found))),
        Text(""),
    ]
    trouble, hidden = unhealthy(found)
    if trouble or hidden:
        parts.append(_trouble_table(f"unhealthy ({len(trouble) + hidden})", trouble, hidden))
    else:
        parts.append(Text("nothing unhealthy", style="green"))
    parts.append(Text(""))
    parts.append(Text("Enter or space on a site: its actor tree.  /: filter by name.", style="dim"))
    return Group(*parts)


def _trouble_table(title: str, trouble: list[tuple[str, str, str]], hidden: int) -> Table:
    t = Table(title=title, title_justify="left", show_edge=False)
    for col in ("site", "what", "why"):
        t.add_column(col)
    for site, what, why in trouble[:UNHEALTHY_ROWS]:
        style = "bold red" if "FENCE UNCONFIRMED" in why or why == "failed" else "yellow"
        # Text, never str: the names and reasons came from the mesh (no markup).
        t.add_row(Text(site, style="bold"), Text(what), Text(why, style=style))
    more = max(0, len(trouble) - UNHEALTHY_ROWS) + hidden
    if more:
        t.add_row(Text("…"), Text(f"{more} more"), Text(""))
    return t


def site_rows(model: MeshModel, site: str, now: float) -> list[RenderableType]:
    """A large mesh's site in the detail pane: what its summary says."""
    summary = model.summaries.get(site)
    if summary is None:
        return [Text("no summary from this site", style="dim")]
    v = summary.value
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    age = summary.age + max(0.0, now - (model.last_poll or now))
    table.add_row("summary", f"{labels.seconds(age)} old" + (" (stale)" if summary.stale else ""))
    table.add_row("agent", labels.state_text(v.state))
    table.add_row("witness", "yes" if v.witness else "no")
    table.add_row("incarnation", Text(v.incarnation))
    table.add_row("labels", Text(site_facts(v.labels) or "none"))
    if v.site_capacity is not None:
        table.add_row("capacity", str(v.site_capacity))
    table.add_row("workloads", counts_text(v.workloads) if v.workloads else Text("none"))
    table.add_row("placed", Text(", ".join(v.placed) or "none"))
    table.add_row("peers", counts_text(v.peers) if v.peers else Text("none"))
    parts: list[RenderableType] = [table]
    if v.unhealthy_total:
        items = [(site, u.what, u.why) for u in v.unhealthy[:SITE_UNHEALTHY_ROWS]]
        more = v.unhealthy_total - len(items)
        parts.append(_trouble_table(f"unhealthy ({v.unhealthy_total})", items, more))
    if site not in model.expanded:
        parts.append(Text("Enter or space: ask this site for its actor tree.", style="dim"))
    return parts
