"""`HarmonyApp`: the Textual app that ties the feed, the model and the widgets together.

Updates arrive from other threads as `FeedMessage`s (posting a message is the one
thread-safe way into a Textual app that never blocks the sender); the app applies them to
the model on its own thread and syncs the widgets. A timer re-labels once a second so that
ages and lease time left keep moving between polls. Clocks are injected so that a recorded
feed renders identically every time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import assert_never

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Footer, Header, Input, Tree

from harmony.actors.journal import JournalEvent
from harmony.actors.messages import GetOutput, Output
from harmony.textsafe import printable
from harmony.tui import commands, overview
from harmony.tui.commands import Action, ActionKind, Outcome, SiteControl
from harmony.tui.feed import (
    ConnectionUpdate,
    EventUpdate,
    Feed,
    FeedUpdate,
    SiteSnapshotsUpdate,
    SnapshotsUpdate,
    SummariesUpdate,
)
from harmony.tui.model import Key, MeshModel
from harmony.tui.screens import LARGE_HELP, MODAL_CSS, ConfirmScreen, HelpScreen, MoveScreen
from harmony.tui.widgets import Banner, DetailPane, EventLog, FilterBar, MeshTree, OutputTail

WORKLOAD_ACTIONS = ("stop", "start", "fence", "move")


def route_logging(level: int = logging.WARNING) -> None:
    """Send log records to Textual's log (devtools) instead of stderr, which would draw
    over the screen (the connection warns while NATS is unreachable, for instance)."""
    from textual.logging import TextualHandler

    logging.basicConfig(level=level, handlers=[TextualHandler()], force=True)


class FeedMessage(Message):
    """One update from the feed, carried onto the app's thread."""

    def __init__(self, update: FeedUpdate) -> None:
        super().__init__()
        self.update = update


class HarmonyApp(App[None]):
    """The live actor tree of a whole mesh, with a detail pane, an event log and actions."""

    TITLE = "Harmony Mesh"
    CSS = (
        MODAL_CSS
        + """
    #banner { display: none; height: auto; background: $error; color: $text;
              text-style: bold; padding: 0 1; }
    #banner.shown { display: block; }
    #main { height: 1fr; }
    #tree { width: 3fr; border: round $primary; }
    #detail-box { width: 2fr; border: round $secondary; padding: 0 1; }
    #log { height: 11; border: round $accent; }
    #filter { height: 3; border: round $warning; }
    """
    )
    BINDINGS = [
        Binding("s", "workload('stop')", "Stop"),
        Binding("t", "workload('start')", "Start"),
        Binding("f", "workload('fence')", "Fence"),
        Binding("m", "workload('move')", "Move"),
        Binding("d", "site('drain')", "Drain"),
        Binding("k", "site('kill')", "Kill site"),
        Binding("r", "site('restart')", "Restart site"),
        Binding("e", "cycle_site", "Log site"),
        Binding("w", "cycle_workload", "Log workload"),
        Binding("x", "clear_filters", "All events", show=False),
        Binding("slash", "filter", "Filter"),  # a large mesh's only (check_action)
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(
        self,
        feed: Feed,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        control: SiteControl | None = None,
        tick: float = 1.0,
        output_every: float = 2.0,
        ask_timeout: float = 5.0,
    ) -> None:
        super().__init__()
        self.feed = feed
        self.model = MeshModel(feed.mesh)
        self.clock = clock
        self.wall_clock = wall_clock
        self.control = control
        self.tick = tick
        self.output_every = output_every
        self.ask_timeout = ask_timeout
        self.connection = "connecting"
        self.outputs: dict[tuple[str, str], OutputTail] = {}
        self.outcomes: list[tuple[Action, Outcome]] = []
        self.filter_bar: FilterBar | None = None
        self.sub_title = f"mesh {feed.mesh}"

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        # Kept as attributes: while a modal screen is up, `query_one` sees only the modal.
        self.mesh_tree = MeshTree(self.feed.mesh, id="tree")
        self.detail = DetailPane(id="detail")
        self.detail_box = VerticalScroll(self.detail, id="detail-box")
        self.log_pane = EventLog(id="log")
        self.banner = Banner(id="banner")
        yield Header(show_clock=False)
        yield self.banner
        with Horizontal(id="main"):
            yield self.mesh_tree
            yield self.detail_box
        yield self.log_pane
        yield Footer()

    def on_mount(self) -> None:
        self.mesh_tree.border_title = "actor tree"
        self.detail_box.border_title = "selected"
        self.log_pane.border_title = Text(self.log_pane.title_text())
        self.mesh_tree.focus()
        self.refresh_view()
        self.set_interval(self.tick, self.refresh_view)
        self.set_interval(self.output_every, self.fetch_output)
        self.feed.start(self._post_update)

    def _post_update(self, update: FeedUpdate) -> None:
        """The feed's sink: called from the feed's threads; posting never blocks."""
        self.post_message(FeedMessage(update))

    def on_unmount(self) -> None:
        self.feed.stop()

    # ------------------------------------------------------------------ feed → model
    def on_feed_message(self, message: FeedMessage) -> None:
        match message.update:
            case SnapshotsUpdate(snaps, at):
                self.model.apply(snaps, at)
                self.refresh_view()
            case SummariesUpdate(found, at):
                large = self.model.large
                self.model.apply_summaries(found, at)
                self.refresh_view()
                if not large:  # the footer now offers the filter
                    self.refresh_bindings()
            case SiteSnapshotsUpdate(snaps, at):
                self.model.apply_sites(snaps, at)
                self.refresh_view()
            case EventUpdate(event):
                self.model.add_event(event)
                self.log_pane.add(event)
            case ConnectionUpdate(state, detail):
                self.connection = state
                self.banner.set_connection(state, detail)
                self.refresh_view()
            case unknown:
                assert_never(unknown)

    def refresh_view(self) -> None:
        now = self.clock()
        self.mesh_tree.sync(self.model, overview.root_label(self.model, self.connection, now), now)
        self.refresh_detail()

    def selected(self) -> Key | None:
        """The key of the node under the cursor (None for the mesh root, or before mount)."""
        tree: MeshTree | None = getattr(self, "mesh_tree", None)
        node = tree.cursor_node if tree is not None else None
        return node.data if node is not None else None

    def refresh_detail(self) -> None:
        key = self.selected()
        output = self.outputs.get((key.site, key.workload)) if key and key.workload else None
        self.detail.show(self.model, key, self.clock(), output)
        title = "selected" if key is None else f"{key.site} {key.path or '(site)'}"
        self.detail_box.border_title = Text(title)  # site names are remote: not markup

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[Key]) -> None:
        self.refresh_detail()
        self.refresh_bindings()
        self.fetch_output()

    # ------------------------------------------------------------------ a large mesh
    def on_tree_node_expanded(self, event: Tree.NodeExpanded[Key]) -> None:
        """A large mesh's site opened: ask it (alone) for its actor tree, now and each poll."""
        key = event.node.data
        if self.model.large and key is not None and key.path == "":
            self.model.expand(key.site)
            self.feed.watch(frozenset(self.model.expanded))
            self.refresh_view()

    def on_tree_node_collapsed(self, event: Tree.NodeCollapsed[Key]) -> None:
        key = event.node.data
        if self.model.large and key is not None and key.path == "":
            self.model.collapse(key.site)
            self.feed.watch(frozenset(self.model.expanded))
            self.refresh_view()

    def action_filter(self) -> None:
        """`/`: type to narrow the tree to sites or workloads whose name contains it."""
        if self.filter_bar is None:
            self.filter_bar = FilterBar(id="filter")
            self.mount(self.filter_bar, before=self.query_one("#main"))
        self.filter_bar.display = True
        self.filter_bar.focus()

    def action_clear_filter(self) -> None:
        """Escape: the whole tree again."""
        if self.filter_bar is not None:
            self.filter_bar.value = ""
            self.filter_bar.display = False
        self.model.filter_text = ""
        self.mesh_tree.focus()
        self.refresh_view()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input is self.filter_bar:
            self.model.filter_text = event.value.strip()
            self.refresh_view()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input is self.filter_bar:
            self.mesh_tree.focus()  # the filter stays; Escape clears it

    # ------------------------------------------------------------------ driver output
    def fetch_output(self) -> None:
        """Ask the selected workload's run actor for its output tail, off the app thread."""
        key = self.selected()
        if key is None or not key.workload:
            return
        view = self.model.sites.get(key.site)
        if view is None or not view.answered:
            return
        if view.steers_slots(key.workload):
            return  # no run actor to ask
        self.run_worker(
            partial(self._fetch_output, key.site, key.workload),
            thread=True,
            group="output",
            exclusive=True,
        )

    def _fetch_output(self, site: str, workload: str) -> None:
        path = f"agent/workload/{workload}/run"
        try:
            answer = self.feed.ask(site, path, GetOutput(lines=20), self.ask_timeout)
        except Exception as e:
            tail = OutputTail(error=printable(f"output unavailable: {e}"), at=self.clock())
        else:  # a workload's output is remote text: no escapes reach the terminal
            lines = (
                tuple(printable(line) for line in answer.lines)
                if isinstance(answer, Output)
                else ()
            )
            tail = OutputTail(lines=lines, at=self.clock())
        self.call_from_thread(self._set_output, site, workload, tail)

    def _set_output(self, site: str, workload: str, tail: OutputTail) -> None:
        self.outputs[(site, workload)] = tail
        self.refresh_detail()

    # ------------------------------------------------------------------ actions
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Hide kill and restart outside the demo; grey out what the selection cannot take."""
        key = self.selected()
        if action in ("filter", "clear_filter"):
            return self.model.large
        if action == "workload":
            return True if key is not None and key.workload else None
        if action == "site":
            if parameters and parameters[0] in ("kill", "restart") and self.control is None:
                return False
            return True if key is not None else None
        return True

    def action_workload(self, kind: ActionKind) -> None:
        key = self.selected()
        if key is None or not key.workload:
            self.notify("Select a workload (or one of its actors) first.", severity="warning")
            return
        if kind == "move":
            targets = sorted(
                name
                for name, view in self.model.sites.items()
                if name != key.site and not view.witness
            )
            self.push_screen(
                MoveScreen(key.workload, key.site, targets),
                lambda target: self._confirm(
                    Action("move", key.site, key.workload, target) if target else None
                ),
            )
            return
        self._confirm(Action(kind, key.site, key.workload))

    def action_site(self, kind: ActionKind) -> None:
        key = self.selected()
        if key is None:
            self.notify("Select a site first.", severity="warning")
            return
        self._confirm(Action(kind, key.site))

    def _confirm(self, action: Action | None) -> None:
        if action is None:
            return
        self.push_screen(ConfirmScreen(action), lambda yes: self._confirmed(action, bool(yes)))

    def _confirmed(self, action: Action, yes: bool) -> None:
        if not yes:
            self.notify(f"{action.kind} cancelled")
            return
        self._journal(action, "requested")
        self.run_worker(partial(self._execute, action), thread=True, group="actions")

    def _execute(self, action: Action) -> None:
        outcome = commands.execute(self.feed, action, self.ask_timeout, self.control)
        self.call_from_thread(self._report, action, outcome)

    def _report(self, action: Action, outcome: Outcome) -> None:
        self.outcomes.append((action, outcome))
        self._journal(action, outcome.text)
        self.notify(printable(outcome.text), severity=outcome.severity, timeout=8, markup=False)

    def _journal(self, action: Action, text: str) -> None:
        """Operator steps go into the event log with the mesh's events (kind tui-…)."""
        event = JournalEvent(
            site=action.site,
            workload=action.workload,
            kind=f"tui-{action.kind}",
            reason=text,
            mono=self.clock(),
            wall=self.wall_clock(),
        )
        self.model.add_event(event)
        self.log_pane.add(event)

    # ------------------------------------------------------------------ event log filters
    def action_cycle_site(self) -> None:
        log = self.log_pane
        site = _cycle(sorted(self.model.sites), log.site_filter)
        log.refilter(self.model, site, log.workload_filter)

    def action_cycle_workload(self) -> None:
        log = self.log_pane
        log.refilter(
            self.model, log.site_filter, _cycle(self.model.workloads(), log.workload_filter)
        )

    def action_clear_filters(self) -> None:
        self.log_pane.refilter(self.model, None, None)

    def action_help(self) -> None:
        self.push_screen(HelpScreen(LARGE_HELP if self.model.large else ""))


def _cycle(options: list[str], current: str | None) -> str | None:
    """all → first → … → last → all."""
    if not options:
        return None
    if current not in options:
        return options[0]
    i = options.index(current)
    return options[i + 1] if i + 1 < len(options) else None
