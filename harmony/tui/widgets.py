"""The TUI's widgets: the mesh tree, the detail pane, the event log, the connection banner.

Widgets only read the model (`harmony.tui.model`) and render labels (`harmony.tui.labels`);
they never touch NATS. The tree is updated in place, node by node, so that a poll every
second re-labels what changed instead of rebuilding (and flickering, and losing the cursor).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.widgets import Input, RichLog, Static, Tree
from textual.widgets.tree import TreeNode, UnknownNodeID

from harmony.actors.journal import JournalEvent
from harmony.client import rejected_summary
from harmony.render import site_facts
from harmony.textsafe import redact_url
from harmony.tui import labels, overview
from harmony.tui.model import PEER_PREFIX, Key, MeshModel, matches

DETAIL_EVENTS = 8


@dataclass(frozen=True)
class OutputTail:
    """The last lines a workload's driver captured, fetched with `GetOutput`."""

    lines: tuple[str, ...] = ()
    error: str = ""
    at: float = 0.0


class MeshTree(Tree[Key]):
    """mesh → sites → agent → site / peers / workloads → lease / run, updated in place."""

    def __init__(self, mesh: str, *, id: str | None = None) -> None:
        super().__init__(Text(f"mesh {mesh}"), id=id)
        self.show_root = True
        self.guide_depth = 3
        self._by_key: dict[Key, TreeNode[Key]] = {}
        self._labels: dict[Key, Text] = {}
        self.root.expand()

    def node_for(self, key: Key) -> TreeNode[Key] | None:
        return self._by_key.get(key)

    @property
    def keys(self) -> list[Key]:
        return list(self._by_key)

    def label_of(self, key: Key) -> str:
        """The plain text shown for a node ('' if it is not in the tree)."""
        label = self._labels.get(key)
        return label.plain if label is not None else ""

    def sync(self, model: MeshModel, root_label: Text, now: float) -> None:
        """Make the tree match the model: add new nodes where they belong, drop vanished
        ones, and re-label only nodes whose label text or style changed."""
        if self.root.label != root_label:
            self.root.set_label(root_label)
        cursor = self.cursor_node
        structure = model.tree()
        wanted = dict(structure)
        parents = {parent for _, parent in structure if parent is not None}
        reshaped = False
        # Gone, or moved (an actor re-parented when its parent actor appears): remove; moved
        # nodes are added back below under their new parent.
        for key in [k for k, n in self._by_key.items() if _moved(n, wanted.get(k, k))]:
            gone = self._by_key.pop(key)
            self._labels.pop(key, None)
            if _attached(self, gone):  # not already gone with a removed ancestor
                gone.remove()
                reshaped = True
        for key in [k for k in self._by_key if not _attached(self, self._by_key[k])]:
            self._by_key.pop(key)  # a wanted node whose ancestor went (re-added below)
            self._labels.pop(key, None)
        following = _next_siblings(structure, self._by_key)
        for i, (key, parent) in enumerate(structure):
            label = overview.node_label(model, key, now)
            node = self._by_key.get(key)
            if node is None:
                parent_node = self.root if parent is None else self._by_key[parent]
                before = following[i]
                expandable = parent is None or key in parents
                # A large mesh's site opens on demand: its tree is asked for when expanded.
                folded = model.large and parent is None and key.site not in model.expanded
                node = parent_node.add(
                    label,
                    data=key,
                    before=before,
                    expand=expandable and not folded,
                    allow_expand=expandable,
                )
                self._by_key[key] = node
                reshaped = True
            elif self._labels.get(key) != label:
                node.set_label(label)
                if key in parents and not node.allow_expand:
                    node.allow_expand = True
                    node.expand()
            self._labels[key] = label
        if reshaped and cursor is not None and cursor.data in self._by_key:
            # The cursor is a line number: keep it on the same node when lines move.
            self.call_after_refresh(self.move_cursor, self._by_key[cursor.data])


def _moved(node: TreeNode[Key], parent: Key | None) -> bool:
    """Whether a node's parent is not `parent` (a key's own key stands for 'not wanted')."""
    current = node.parent.data if node.parent is not None else None
    return current != parent


def _attached(tree: Tree[Key], node: TreeNode[Key]) -> bool:
    """Whether a node is still in the tree (removing a node removes its descendants, but
    they keep their parent links, so walking up would not tell)."""
    try:
        return tree.get_node_by_id(node.id) is node
    except UnknownNodeID:
        return False


def _next_siblings(
    structure: list[tuple[Key, Key | None]], nodes: dict[Key, TreeNode[Key]]
) -> list[TreeNode[Key] | None]:
    """For each entry, its first later sibling already in the tree: a new node goes right
    before it. One pass from the end (a thousand sites: not a scan per node). Nodes added
    while syncing do not change the answers: they are added in order, so a node's later
    siblings are never added before it."""
    out: list[TreeNode[Key] | None] = [None] * len(structure)
    last: dict[Key | None, TreeNode[Key]] = {}
    for i in range(len(structure) - 1, -1, -1):
        key, parent = structure[i]
        out[i] = last.get(parent)
        if key in nodes:
            last[parent] = nodes[key]
    return out


class DetailPane(Static):
    """Everything about the selected node: its fields, its recent events, its output."""

    _shown: RenderableType | None = None

    def show(
        self, model: MeshModel, key: Key | None, now: float, output: OutputTail | None
    ) -> None:
        shown = detail_renderable(model, key, now, output)
        if shown is not self._shown:  # a large mesh's summary: the same until it changes
            self._shown = shown
            self.update(shown)


def detail_renderable(
    model: MeshModel, key: Key | None, now: float, output: OutputTail | None
) -> RenderableType:
    if key is None and model.large:
        return overview.summary_renderable(model)
    if key is None:
        return Text(
            f"mesh {model.mesh}\n\nSelect a site, an actor or a workload in the tree.\n"
            "Press ? for the keys.",
            style="dim",
        )
    view = model.sites.get(key.site)
    # Remote strings go in as Text, never str: a str cell is parsed as Rich markup.
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    title = Text.assemble((key.site, "bold cyan"), " ", (key.path or "(site)", "bold"))
    if view is None:
        return title
    if model.large and key.path == "":
        rows = overview.site_rows(model, key.site, now)
        return Group(title, *rows, Text(""), *_events(model, key.site, None))
    if key.path == "":
        table.add_row("state", labels.state_text(view.state))
        table.add_row("witness", "yes" if view.witness else "no")
        table.add_row("heartbeat", f"{labels.seconds(view.heartbeat_age(now))} ago")
        if view.received is not None:
            table.add_row("answered", f"{labels.seconds(now - view.received)} ago")
        if view.snapshot is not None:
            table.add_row("incarnation", Text(view.snapshot.incarnation))
            snap = view.snapshot
            if snap.labels:
                table.add_row("labels", Text(site_facts(snap.labels)))
            if snap.site_capacity is not None:
                table.add_row("capacity", str(snap.site_capacity))
            table.add_row("nats", Text(redact_url(view.snapshot.nats_url) or "—"))
            table.add_row("rejected", rejected_summary(view.snapshot) or "none")
    elif key.path.startswith(PEER_PREFIX):
        peer = view.peer(key.peer)
        if peer is not None:
            table.add_row("peer", Text(peer.site))
            table.add_row("state", labels.state_text(peer.state))
            table.add_row("heartbeat", f"{labels.seconds(peer.last_heartbeat_age)} ago (then)")
            table.add_row("witness", "yes" if peer.witness else "no")
    else:
        info = view.actor(key.path)
        if info is not None:
            table.add_row("kind", Text(info.kind))
            table.add_row("state", labels.state_text(info.state))
            table.add_row("restarts", str(info.restarts))
            if info.policy:
                table.add_row("policy", Text(info.policy))
            for k, v in sorted(info.detail.items()):
                if v != "":
                    table.add_row(Text(k), Text(v))
    if not view.answered and model.polls:
        table.add_row("", Text("site not answering: last known values", style="bold yellow"))
    parts: list[RenderableType] = [title, table, Text("")]
    workload = key.workload or None
    parts.extend(_events(model, key.site, workload))
    if workload and view.steers_slots(workload):
        parts.append(Text(""))
        parts.append(
            Text(
                f"its slots ({workload}--0, ...) run the copies: select one for its output",
                style="dim",
            )
        )
    elif workload:
        parts.append(Text(""))
        parts.append(Text("driver output (tail)", style="bold"))
        if output is None:
            parts.append(Text("fetching…", style="dim"))
        elif output.error:
            parts.append(Text(output.error, style="yellow"))
        else:
            parts.extend(Text(line, style="dim") for line in output.lines)
            if not output.lines:
                parts.append(Text("no output", style="dim"))
    return Group(*parts)


def _events(model: MeshModel, site: str, workload: str | None) -> list[RenderableType]:
    events = model.events_for(site, workload, limit=DETAIL_EVENTS)
    out: list[RenderableType] = [
        Text(f"recent events ({site}{' / ' + workload if workload else ''})", "bold")
    ]
    out.extend(labels.event_line(e, compact=True) for e in events)
    if not events:
        out.append(Text("none yet", style="dim"))
    return out


class EventLog(RichLog):
    """Every site's journal events as they arrive, filtered by site and workload."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=2000, wrap=False, markup=False, auto_scroll=True)
        self.site_filter: str | None = None
        self.workload_filter: str | None = None

    def add(self, event: JournalEvent) -> None:
        if matches(event, self.site_filter, self.workload_filter):
            self.write(labels.event_line(event))

    def refilter(self, model: MeshModel, site: str | None, workload: str | None) -> None:
        self.site_filter, self.workload_filter = site, workload
        self.clear()
        for event in model.events_for(site, workload):
            self.write(labels.event_line(event))
        self.border_title = Text(self.title_text())  # remote site names: never markup

    def title_text(self) -> str:
        return (
            f"events · site: {self.site_filter or 'all'} (e)"
            f" · workload: {self.workload_filter or 'all'} (w)"
        )


class FilterBar(Input):
    """`/` on a large mesh: the text a site's or a workload's name must contain."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(placeholder="site or workload name (Enter keeps, Escape clears)", id=id)
        self.border_title = "filter"


class Banner(Static):
    """A red line across the top while the NATS connection is down."""

    def set_connection(self, state: str, detail: str) -> None:
        if state == "connected":
            self.remove_class("shown")
            return
        text = {
            "connecting": f"connecting to NATS ({detail})…",
            "disconnected": "NATS connection lost — reconnecting… (showing last known state)",
            "unreachable": f"NATS unreachable — retrying… {detail}",
        }.get(state, f"NATS: {state} {detail}")
        self.update(Text(redact_url(text)))  # Text: the detail is never parsed as markup
        self.add_class("shown")
