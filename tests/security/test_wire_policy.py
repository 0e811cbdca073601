"""The export list and the wire's bounds, as pure logic: who reaches what, what is clamped,
and that every string of every wire message has a bound."""

from __future__ import annotations

import msgspec
import pytest

import harmony.actors.journal  # noqa: F401 - JournalEvent joins the union
from harmony.actors import messages as m
from harmony.actors.exports import EXPORTS, OPERATOR, SITE, ExportPolicy, mesh_sites
from harmony.config import (
    FailoverTopologyConfig,
    ProcessDriverConfig,
    SiteConfig,
    Timings,
    WorkloadConfig,
)
from harmony.mesh import subjects, wire
from harmony.mesh.admission import SenderBuckets, WireStats, rate_from_env
from harmony.mesh.remote import Refused


def config(site: str = "a") -> SiteConfig:
    def w(name: str, primary: str, standbys: list[str]) -> WorkloadConfig:
        return WorkloadConfig(
            name=name,
            driver=ProcessDriverConfig(command=["true"]),
            topology=FailoverTopologyConfig(primary=primary, standbys=standbys),
        )

    return SiteConfig(
        mesh="m",
        site=site,
        timings=Timings(ask_timeout=4.0),
        workloads=[w("web", "a", ["b"]), w("db", "a", ["c"])],
    )


POLICY = ExportPolicy(config())


def test_senders_are_other_sites_of_the_mesh_or_the_operator() -> None:
    assert mesh_sites(config()) == {"a", "b", "c"}
    assert POLICY.sender_kind("b") == POLICY.sender_kind("c") == SITE
    assert POLICY.sender_kind(subjects.OPERATOR) == OPERATOR
    for stranger in ("a", "zz", "", "_all", "B"):
        assert POLICY.sender_kind(stranger) is None, stranger
    assert ExportPolicy(config(), sites=["w"]).sender_kind("w") == SITE  # a roster's sites


COMMANDS = [
    m.StartWorkload(),
    m.StopWorkload(),
    m.FenceWorkload(),
    m.DrainSite(),
    m.ProbePeer(target="b"),
    m.SendNotice(target="b", text="x"),
]


@pytest.mark.parametrize("path", ["agent/workload/web/run", "agent/workload/web/lease"])
def test_run_and_lease_actors_take_no_command_from_anyone(path: str) -> None:
    for kind, sender in ((SITE, "b"), (OPERATOR, subjects.OPERATOR)):
        for msg in [*COMMANDS, m.Ping(), m.MoveWorkload(target="b")]:
            with pytest.raises(Refused) as e:
                POLICY.admit(sender, kind, path, msg)
            assert e.value.code == wire.ERR_NOT_EXPORTED
    assert not POLICY.exported(SITE, path)
    assert not POLICY.exported(OPERATOR, "agent/workload/web/lease")
    assert not POLICY.exported(OPERATOR, "agent/peers")


def test_operator_commands_only_from_the_operator() -> None:
    for path, msg in [
        ("agent/workload/web", m.StopWorkload()),
        ("agent/workload/web", m.FenceWorkload()),
        ("agent/workload/web", m.StartWorkload()),
        ("agent", m.DrainSite()),
        ("agent/site", m.ProbePeer(target="b")),
        ("agent/site", m.SendNotice(target="b", text="x")),
        ("agent/site", m.GetNotices()),
    ]:
        assert POLICY.admit(subjects.OPERATOR, OPERATOR, path, msg) == msg
        with pytest.raises(Refused, match="not accepted from a site"):
            POLICY.admit("b", SITE, path, msg)


def test_what_sites_send_each_other() -> None:
    assert POLICY.admit("b", SITE, "agent/site", m.Ping(text="probe")) == m.Ping(text="probe")
    note = POLICY.admit("b", SITE, "agent/site", m.Notice(text="hi", sender="the-boss"))
    assert note == m.Notice(text="hi", sender="b")  # the subject's sender, not the message's
    fwd = POLICY.admit("b", SITE, "agent/workload/web", m.MoveWorkload(target="b"))
    assert fwd == m.MoveWorkload(target="b", origin="b")  # a forward is never forwarded again
    with pytest.raises(Refused, match="not a site of db's topology"):
        POLICY.admit("b", SITE, "agent/workload/db", m.MoveWorkload(target="b"))


def test_probes_are_clamped_and_never_of_the_site_itself() -> None:
    with pytest.raises(Refused) as e:
        POLICY.admit(subjects.OPERATOR, OPERATOR, "agent/site", m.ProbePeer(target="a"))
    assert e.value.code == wire.ERR_INVALID
    long = m.ProbePeer(target="b", timeout=3600)
    assert POLICY.admit(subjects.OPERATOR, OPERATOR, "agent/site", long).timeout == 4.0
    short = m.ProbePeer(target="b", timeout=0.5)
    assert POLICY.admit(subjects.OPERATOR, OPERATOR, "agent/site", short) == short


def test_every_export_names_real_message_types_and_no_local_only_actor() -> None:
    for pattern, by_kind in EXPORTS:
        assert not pattern.endswith(("/lease", "peers")), pattern
        assert set(by_kind) <= {SITE, OPERATOR}
        for types in by_kind.values():
            assert all(issubclass(t, wire.Message) for t in types)


# -- the wire's bounds ---------------------------------------------------------------------------


def _bounded(t: msgspec.inspect.Type) -> bool:
    if isinstance(t, msgspec.inspect.StrType):
        return t.max_length is not None or (t.pattern is not None and "{" in t.pattern)
    if isinstance(t, msgspec.inspect.UnionType):
        return all(_bounded(x) for x in t.types)
    if isinstance(t, (msgspec.inspect.ListType, msgspec.inspect.SetType)):
        return t.max_length is not None and _bounded(t.item_type)
    if isinstance(t, msgspec.inspect.DictType):
        return t.max_length is not None and _bounded(t.key_type) and _bounded(t.value_type)
    return True


def test_every_string_list_and_map_on_the_wire_has_a_bound() -> None:
    """A new field that takes plain `str`, `list` or `dict` must choose its bound."""
    loose = []
    for tag, cls in wire.message_types().items():
        if not cls.__module__.startswith("harmony.") or cls.__module__.endswith(".journal"):
            continue  # JournalEvent: the journal's own record, shown only (printable)
        for f in msgspec.inspect.type_info(cls).fields:  # type: ignore[attr-defined]
            if not _bounded(f.type):
                loose.append(f"{tag}.{f.name}")
    assert loose == []


@pytest.mark.parametrize(
    ("msg", "needle"),
    [
        (m.StopWorkload(reason="x" * (wire.TEXT_MAX + 1)), "characters"),
        (m.MoveWorkload(target="b.c"), "not a name"),
        (m.MoveWorkload(target="b\n"), "not a name"),
        (m.ProbePeer(target="x" * 64), "not a name"),
        (
            m.Heartbeat(mesh="m", site="b", seq=-1, incarnation="i", mono=0, wall=0, interval=1),
            "seq",
        ),
        (
            m.Heartbeat(mesh="m", site="b", seq=1, incarnation="i", mono=0, wall=0, interval=61),
            "interval",
        ),
        (
            m.Heartbeat(
                mesh="m", site="b", seq=1, incarnation="i", mono=float("nan"), wall=0, interval=1
            ),
            "mono",
        ),
        (m.GetOutput(lines=10_001), "lines"),
    ],
)
def test_overlong_strings_names_and_numbers_are_malformed(msg: wire.Message, needle: str) -> None:
    with pytest.raises(wire.WireError, match=needle):
        wire.decode(wire.encode(msg))


def test_invalid_utf8_is_a_wire_error_not_an_escape() -> None:
    raw = wire.encode(m.Ping(text="QQ")).replace(b"\xa2QQ", b"\xa2\xff\xfe")
    # msgspec 0.22 raised UnicodeDecodeError here (wire.py turns it into a WireError); 0.23
    # raises its own DecodeError ("Invalid UTF-8 encoded string"): a WireError either way.
    with pytest.raises(wire.WireError, match=r"(?i)invalid UTF-8"):
        wire.decode(raw)
    with pytest.raises(wire.WireError, match=r"(?i)invalid UTF-8"):
        wire.decode_many(wire.frame_tells([raw]))


def test_shown_text_is_cut_by_its_sender_so_that_it_always_decodes() -> None:
    out = m.Output(lines=["x" * 10_000, "\x1b" * 2000])
    back = wire.decode(wire.encode(out))
    assert isinstance(back, m.Output)
    assert all(len(line) <= wire.SHOWN_MAX for line in back.lines)


# -- rate and counters -------------------------------------------------------------------------


def test_a_token_bucket_per_sender() -> None:
    now = [0.0]
    buckets = SenderBuckets(rate=10, burst=5, clock=lambda: now[0])
    assert [buckets.allow("b") for _ in range(7)] == [True] * 5 + [False] * 2
    assert buckets.allow("c")  # another sender has its own bucket
    now[0] = 0.3  # three more tokens
    assert [buckets.allow("b") for _ in range(4)] == [True] * 3 + [False]


def test_the_rate_comes_from_a_constant_or_the_environment() -> None:
    assert rate_from_env({}) == (2000.0, 4000.0)
    assert rate_from_env({"HARMONY_WIRE_RATE": "off"}) is None
    assert rate_from_env({"HARMONY_WIRE_RATE": "100/300"}) == (100.0, 300.0)
    for bad in ("fast", "0/1", "-1/2", "inf/1"):
        with pytest.raises(ValueError, match="HARMONY_WIRE_RATE"):
            rate_from_env({"HARMONY_WIRE_RATE": bad})


def test_rejections_are_counted_by_reason_and_logged_once_per_subject(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stats = WireStats()
    for _ in range(3):
        stats.reject("malformed", "harmony.m.a.ask.b.agent.site", "bad")
    stats.reject("not-exported", "harmony.m.a.ask.b.agent.site", "no")
    stats.reject("unknown-actor", "harmony.m.a.ask.b.agent.nope", "none")
    assert stats.rejected() == {"malformed": 3, "not-exported": 1, "unknown-actor": 1}
    assert (stats.malformed, stats.unknown_actor) == (3, 1)
    assert len([r for r in caplog.records if "rejected" in r.getMessage()]) == 3


def test_the_site_actor_itself_never_probes_its_own_site() -> None:
    """Without the bridge's refusal too (a local ask): the answer comes at once."""
    import time

    import pykka
    from support.actors import make_kit

    from harmony.actors.site import SITE_PATH, SiteActor

    kit = make_kit()
    ref = SiteActor.start(kit.ctx, SITE_PATH, None)
    try:
        t0 = time.monotonic()
        result = ref.ask(m.ProbePeer(target="a", timeout=12), timeout=5)
        assert isinstance(result, m.ProbeResult)
        assert not result.ok and "does not probe itself" in result.error
        assert time.monotonic() - t0 < 1.0
    finally:
        pykka.ActorRegistry.stop_all()


def test_status_and_the_tui_show_refusals_by_reason() -> None:
    from harmony.actors.messages import Snapshot
    from harmony.client import rejected_summary

    def snap(**kw: object) -> Snapshot:
        base = {"mesh": "m", "site": "a", "witness": False, "incarnation": "i"}
        return Snapshot(**base, mono=1.0, wall=1.0, actors=[], peers=[], **kw)  # type: ignore[arg-type]

    assert rejected_summary(snap(rejected={"relayed": 1, "malformed": 3})) == (
        "3 malformed, 1 relayed"
    )
    assert rejected_summary(snap(malformed=2)) == "2 malformed"  # an older agent
    assert rejected_summary(snap()) == ""
