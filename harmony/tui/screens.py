"""Modal screens: confirm an action, pick a move target, the help page.

Every action that changes the mesh goes through `ConfirmScreen` first: a stray key must
never fence a production workload.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, OptionList, Static
from textual.widgets.option_list import Option

from harmony.tui.commands import Action

MODAL_CSS = """
ConfirmScreen, MoveScreen, HelpScreen { align: center middle; }
.dialog {
    width: 72; height: auto; max-height: 90%;
    border: thick $warning; background: $surface; padding: 1 2;
}
.dialog .title { text-style: bold; margin-bottom: 1; }
.dialog .buttons { height: auto; align-horizontal: right; margin-top: 1; }
.dialog Button { margin-left: 2; }
.dialog OptionList { height: auto; max-height: 12; }
HelpScreen .dialog { width: 96; }
"""


class ConfirmScreen(ModalScreen[bool]):
    """Yes (y / Enter on Yes) or no (n / Escape)."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, action: Action) -> None:
        super().__init__()
        self.action_ = action

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self.action_.title), classes="title")
            yield Static(Text(self.action_.explanation, style="dim"))
            with Horizontal(classes="buttons"):
                yield Button("No (n)", id="no")
                yield Button("Yes (y)", id="yes", variant="error")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class MoveScreen(ModalScreen[str | None]):
    """Pick the site to move a workload to (Enter), or cancel (Escape)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, workload: str, source: str, targets: list[str]) -> None:
        super().__init__()
        self.workload = workload
        self.source = source
        self.targets = targets

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            # Text, not str: workload and site names came from the mesh (never markup).
            yield Static(Text(f"Move {self.workload} from {self.source} to:"), classes="title")
            yield OptionList(*(Option(Text(t), id=t) for t in self.targets))
            yield Static(Text("Enter picks, Escape cancels.", style="dim"))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


HELP = """\
[b]Harmony Mesh — keys[/b]

  [b]↑ ↓ ← →[/b] / Enter   move in the tree, fold and unfold
  [b]s[/b]  stop the selected workload        [b]t[/b]  start it
  [b]f[/b]  fence it (stop now; it must not run here)
  [b]m[/b]  move it to another site          [b]d[/b]  drain the selected site
  [b]k[/b]  kill the selected site, [b]r[/b] restart it (demo only: watch the failover)
  [b]e[/b]  event log: cycle the site filter  [b]w[/b]  cycle the workload filter
  [b]x[/b]  event log: clear both filters     [b]?[/b]  this help     [b]q[/b]  quit

Every action asks for confirmation (y / n), then shows its outcome as a notification and
in the event log (magenta [b]tui-…[/b] lines).

[b]Reading the tree[/b]
  sites: [green]alive[/] / [yellow]suspect[/] / [red]silent[/] as their peers see them;
  [yellow]mute[/]: peers hear it but it does not answer; [red]isolated[/]: it answers but
  its peers call it silent. A site that stops answering stays in the tree, [grey50]greyed[/],
  with its last known state.
  workloads: strategy (AC absolute-consistency, SBA split-brain-allowed), role, phase,
  ● active, fencing token, lease as seen, and the time left before the holder must fence.
  A line highlighted in yellow changed in the last few seconds.
  Event times are UTC.

Escape closes this help.
"""


LARGE_HELP = """\
[b]A large mesh[/b] (more than ten sites): the summary first (select the mesh line), one
line per site from its summary. Enter or space on a site asks that site alone for its actor
tree (re-asked while it stays open). [b]/[/b] filters the tree by site or workload name
(Enter keeps the filter, Escape clears it).

"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close")]

    def __init__(self, extra: str = "") -> None:
        super().__init__()
        self.extra = extra

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(
                HELP.replace("Escape closes this help.", self.extra + "Escape closes this help.")
            )

    def action_close(self) -> None:
        self.dismiss(None)
