"""Issue 12, item 1: a site's labels and capacity travel in heartbeats, snapshots and
summaries, bounded like every wire field; older peers without them still decode; `harmony
status` and the TUI show them."""

from __future__ import annotations

import msgspec
import pytest
from rich.console import Console

from harmony.actors.messages import ActorInfo, Heartbeat, PeerInfo, Snapshot
from harmony.actors.site import constraint_digests
from harmony.config import ConfigError, parse_config
from harmony.mesh import summaries, wire
from harmony.mesh.summaries import SiteSummary, Summary
from harmony.render import site_tree, summary_view
from harmony.strategies.labels import MAX_LABELS, constraints_digest, parse_constraints
from harmony.tui import labels as tui_labels
from harmony.tui import overview
from harmony.tui.model import MeshModel, SiteView

EU = {"jurisdiction": "EU", "region": "eu-west"}


def heartbeat(**fields: object) -> Heartbeat:
    base: dict[str, object] = dict(
        mesh="m", site="a", seq=1, incarnation="i", mono=1.0, wall=1.0, interval=1.0
    )
    return Heartbeat(**(base | fields))  # type: ignore[arg-type]


def text(renderable: object) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


# -- the wire ---------------------------------------------------------------------------------
def test_labels_capacity_and_digests_round_trip_in_a_heartbeat() -> None:
    digest = constraints_digest(parse_constraints(['jurisdiction in ["EU"]']))
    hb = heartbeat(labels=EU, site_capacity=2, constraints={"ledger": digest})
    back = wire.decode(wire.encode(hb))
    assert isinstance(back, Heartbeat)
    assert back.labels == EU and back.site_capacity == 2 and back.constraints == {"ledger": digest}


def test_a_heartbeat_of_an_older_peer_decodes_with_no_labels() -> None:
    raw = msgspec.msgpack.decode(wire.encode(heartbeat(labels=EU, site_capacity=3)))
    for field in ("labels", "site_capacity", "constraints"):
        raw.pop(field, None)
    back = wire.decode(msgspec.msgpack.encode(raw))
    assert isinstance(back, Heartbeat)
    assert back.labels == {} and back.site_capacity is None and back.constraints == {}


@pytest.mark.parametrize(
    "fields",
    [
        {"labels": {f"k{i}": "v" for i in range(MAX_LABELS + 1)}},
        {"labels": {"bad key": "v"}},
        {"labels": {"1key": "v"}},
        {"labels": {"k": "x" * 129}},
        {"labels": {"k": "a\nb"}},
        {"labels": {"k": 'say "EU"'}},
        {"site_capacity": -1},
        {"constraints": {"ledger": "not-a-digest"}},
        {"constraints": {"bad name!": "0" * 16}},
    ],
)
def test_labels_out_of_bounds_make_the_heartbeat_malformed(fields: dict[str, object]) -> None:
    with pytest.raises(wire.WireError):
        wire.decode(wire.encode(heartbeat(**fields)))


def test_summaries_and_snapshots_carry_labels_and_old_summaries_decode() -> None:
    s = SiteSummary(
        site="a", incarnation="i", state="running", wall=1.0, labels=EU, site_capacity=1
    )
    back = summaries.decode(summaries.encode(s), "a")
    assert back is not None and back.labels == EU and back.site_capacity == 1
    old = msgspec.msgpack.decode(summaries.encode(s))
    del old["labels"], old["site_capacity"]
    back = summaries.decode(msgspec.msgpack.encode(old), "a")
    assert back is not None and back.labels == {} and back.site_capacity is None
    bad = msgspec.msgpack.decode(summaries.encode(s)) | {"labels": {"k": "\x1b[2J"}}
    assert summaries.decode(msgspec.msgpack.encode(bad), "a") is None
    snap = snapshot("a", labels=EU, site_capacity=2)
    again = wire.decode(wire.encode(snap))
    assert isinstance(again, Snapshot) and again.labels == EU and again.site_capacity == 2


# -- the config -------------------------------------------------------------------------------
CONFIG = """
mesh = "m"
site = "a"
{extra}
[[workloads]]
name = "ledger"
driver = {{ kind = "process", command = ["true"] }}
topology = {{ kind = "failover", primary = "a", standbys = ["b"], {constraints} }}
"""


def config(extra: str = "", constraints: str = "constraints = []") -> str:
    return CONFIG.format(extra=extra, constraints=constraints)


def test_a_config_names_labels_capacity_and_constraints() -> None:
    cfg = parse_config(
        config(
            'capacity = 2\nlabels = { jurisdiction = "EU", region = "eu-west" }',
            "constraints = ['jurisdiction in [\"EU\"]']",
        )
    )
    assert cfg.labels == EU and cfg.capacity == 2
    assert cfg.workloads[0].topology.constraints == ['jurisdiction in ["EU"]']
    digest = constraints_digest(parse_constraints(['jurisdiction  in ["EU"]']))
    assert constraint_digests(cfg) == {"ledger": digest}  # spacing aside, the same meaning
    plain = parse_config(config())
    assert plain.labels == {} and plain.capacity is None


@pytest.mark.parametrize(
    ("extra", "constraints", "field", "needle"),
    [
        ('labels = { "bad key" = "x" }', "", "labels", "not a valid label name"),
        ('labels = { k = "a\\u0007" }', "", "labels.k", "not a valid label value"),
        ("capacity = -1", "", "capacity", "must be > 0"),
        ("", "constraints = ['jurisdiction is EU']", "workloads[0].topology.constraints[0]", "is"),
        ("", "constraints = ['k in []']", "workloads[0].topology.constraints[0]", "empty list"),
    ],
)
def test_bad_labels_and_constraints_are_refused_with_their_field(
    extra: str, constraints: str, field: str, needle: str
) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(config(extra, constraints or "constraints = []"))
    assert e.value.field == field and needle in e.value.reason, e.value


# -- harmony status ---------------------------------------------------------------------------
def snapshot(site: str, **fields: object) -> Snapshot:
    return Snapshot(
        mesh="m",
        site=site,
        witness=False,
        incarnation="i",
        mono=0.0,
        wall=0.0,
        actors=[ActorInfo(path="agent", kind="agent", state="running")],
        peers=[PeerInfo(site="b", state="alive", labels={"jurisdiction": "US"})],
        **fields,  # type: ignore[arg-type]
    )


def test_status_of_a_site_shows_its_labels_capacity_and_its_peers_labels() -> None:
    out = text(site_tree(snapshot("a", labels=EU, site_capacity=2)))
    head = out.splitlines()[0]
    assert "jurisdiction=EU region=eu-west capacity=2" in head, out
    assert "b alive" in out and "jurisdiction=US" in out
    bare = text(site_tree(snapshot("a"))).splitlines()[0]
    assert "capacity" not in bare and "=EU" not in bare


def test_the_summary_view_counts_sites_by_label() -> None:
    def found(site: str, labels: dict[str, str]) -> Summary:
        return Summary(
            SiteSummary(site=site, incarnation="i", state="running", wall=1.0, labels=labels),
            1.0,
        )

    view = text(
        summary_view(
            "m",
            {
                "a": found("a", {"jurisdiction": "EU"}),
                "b": found("b", {"jurisdiction": "EU"}),
                "c": found("c", {"jurisdiction": "US"}),
            },
        )
    )
    assert "labels (sites): 2 jurisdiction=EU, 1 jurisdiction=US" in view, view
    unlabelled = text(summary_view("m", {"a": found("a", {})}))
    assert "labels" not in unlabelled


# -- the TUI ----------------------------------------------------------------------------------
def test_the_tui_shows_a_site_s_labels_on_its_line_and_in_its_details() -> None:
    view = SiteView("a", snapshot=snapshot("a", labels=EU, site_capacity=1), answered=True)
    line = tui_labels.site_label(view, 0.0).plain
    assert "jurisdiction=EU region=eu-west capacity=1" in line, line
    model = MeshModel("m")
    value = SiteSummary(
        site="a", incarnation="i", state="running", wall=1.0, labels=EU, site_capacity=1
    )
    model.apply_summaries({"a": Summary(value, 1.0)}, at=10.0)
    line = overview.site_label(model, "a", 10.0).plain
    assert "jurisdiction=EU region=eu-west capacity=1" in line, line
    details = text(overview.site_rows(model, "a", 10.0)[0])
    assert "labels" in details and "jurisdiction=EU" in details and "capacity" in details


def test_the_tui_app_shows_labels_on_the_site_lines() -> None:
    """Pilot on the TUI tests' recorded mesh, with labels added to site-b's snapshots."""
    import asyncio
    from pathlib import Path

    from support.waiting import wait_for

    from harmony.tui.app import HarmonyApp
    from harmony.tui.model import Key
    from harmony.tui.recording import load

    recording = load(Path(__file__).parent.parent / "tui" / "data" / "failover.json")
    for poll in recording.polls:
        poll.snapshots = [
            msgspec.structs.replace(s, labels={"jurisdiction": "EU"}, site_capacity=1)
            if s.site == "site-b"
            else s
            for s in poll.snapshots
        ]

    async def scenario() -> None:
        feed = recording.feed()
        app = HarmonyApp(feed, clock=lambda: recording.now, wall_clock=lambda: recording.wall)
        async with app.run_test(size=(160, 48)) as pilot:
            await wait_for(pilot, lambda: app.model.polls == 2, 5)
            b = app.mesh_tree.label_of(Key("site-b"))
            assert "jurisdiction=EU capacity=1" in b, b
            assert "jurisdiction" not in app.mesh_tree.label_of(Key("site-c"))

    asyncio.run(scenario())
