"""The per-user permissions (pure): what each role may publish and subscribe to.

Subjects are matched the way nats-server matches them: a publish is allowed when some allow
pattern matches it; a subscription when some allow pattern covers every subject it could
receive (`covers`). The real server is exercised in test_keys_server.py.
"""

from __future__ import annotations

import pytest

from harmony.config import ConfigError
from harmony.mesh import subjects
from harmony.mesh.subjects import lease_bucket
from harmony.security.material import new_user_seed, public_key
from harmony.security.permissions import (
    UserPermissions,
    identity_permissions,
    lease_scope,
    mesh_users,
    site_permissions,
)
from harmony.security.roster import IdentityEntry, Roster, parse_roster, valid_user_key

M = "m"
B = lease_bucket(M, "ledger")
WEB = lease_bucket(M, "web")
S = f"KV_{B}"


def covers(pattern: str, subject: str) -> bool:
    """Whether every subject matching `subject` (which may hold wildcards) matches `pattern`."""
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s):
            return False
        if tok == "*":
            if s[i] == ">":
                return False
            continue
        if tok != s[i]:
            return False
    return len(p) == len(s)


def can_pub(u: UserPermissions, subject: str) -> bool:
    return any(covers(p, subject) for p in u.publish)


def can_sub(u: UserPermissions, subject: str) -> bool:
    return any(covers(p, subject) for p in u.subscribe)


def key() -> str:
    return public_key(new_user_seed())


def test_covers_follows_nats_matching() -> None:
    assert covers("a.*.c", "a.b.c") and not covers("a.*.c", "a.b.d")
    assert covers("a.>", "a.b.c") and not covers("a.>", "a")
    assert not covers("a.*", "a.>") and not covers("a.*.c", "a.*.>")
    assert covers(">", ">") and not covers("harmony.>", ">")


SITE_A = site_permissions(M, "a", "UA", ["ledger"])


@pytest.mark.parametrize(
    "subject",
    [
        "harmony.m.a.hb",
        "harmony.m.a.event",
        "harmony.m.b.tell.a.agent.peers",
        "harmony.m.b.ask.a.agent.site",
        "harmony.m.c.ask.a.agent.workload.ledger.run",
        "harmony.m.b.snapshot",
        "harmony.m._all.snapshot",
        f"$KV.{B}.ledger",
        "$JS.API.INFO",
        f"$JS.API.STREAM.INFO.{S}",
        f"$JS.API.STREAM.CREATE.{S}",
        f"$JS.API.STREAM.MSG.GET.{S}",
        f"$JS.API.DIRECT.GET.{S}.$KV.{B}.ledger",
        f"$JS.API.CONSUMER.CREATE.{S}.abc.$KV.{B}.ledger",
        f"$JS.API.CONSUMER.DELETE.{S}.abc",
        f"$JS.FC.{S}.x.y",
        f"$JS.ACK.{S}.x.1.2.3",
    ],
)
def test_a_site_publishes_its_own_subjects_and_lease_work(subject: str) -> None:
    assert can_pub(SITE_A, subject)


@pytest.mark.parametrize(
    "subject",
    [
        "harmony.m.b.hb",  # another site's heartbeat
        "harmony.m.b.event",
        "harmony.m.b.ask.b.agent.site",  # claiming to be b
        "harmony.m.b.tell.b.agent.peers",
        "harmony.m.b.ask._op.agent.workload.ledger",  # claiming to be an operator
        "harmony.m.b.tell._op.agent",
        "harmony.other.b.ask.a.agent.site",  # another mesh
        f"$KV.{WEB}.web",  # a workload outside its topology
        f"$KV.{B}.>",
        "_INBOX.m.b.x.1",  # a forged reply: replies go through allow_responses only
        "_INBOX.anything",
        f"$JS.API.STREAM.DELETE.{S}",
        f"$JS.API.STREAM.PURGE.{S}",
        f"$JS.API.STREAM.UPDATE.{S}",
        f"$JS.API.STREAM.MSG.DELETE.{S}",
        "$JS.API.STREAM.CREATE.OTHER",
        "$JS.API.STREAM.INFO.OTHER",
        "$JS.API.STREAM.LIST",
        "$JS.API.CONSUMER.CREATE.OTHER",
        "$KV.other.ledger",
        "$SYS.REQ.SERVER.PING",
        ">",
    ],
)
def test_a_site_cannot_publish(subject: str) -> None:
    assert not can_pub(SITE_A, subject)


def test_a_site_subscribes_to_its_own_requests_heartbeats_and_inbox_only() -> None:
    for ok in (
        "harmony.m.a.tell.>",
        "harmony.m.a.ask.>",
        "harmony.m.a.snapshot",
        "harmony.m._all.snapshot",
        "harmony.m.*.hb",
        "_INBOX.m.a.>",
        "_INBOX.m.a.abc.1",
    ):
        assert can_sub(SITE_A, ok), ok
    for bad in (
        ">",
        "harmony.>",
        "harmony.m.>",
        "harmony.m.b.ask.>",
        "harmony.m.*.ask.>",
        "harmony.m.b.snapshot",
        "harmony.m.*.event",
        "_INBOX.>",
        "_INBOX.m.b.>",
        "_INBOX.m._op.admin.>",
        f"$KV.{B}.>",
        "$JS.>",
    ):
        assert not can_sub(SITE_A, bad), bad
    assert SITE_A.allow_responses


def test_operator_commands_as_op_and_reads_leases_only() -> None:
    op = identity_permissions(M, "admin", "UX", "operator", ["ledger"])
    assert can_pub(op, "harmony.m.a.tell._op.agent.workload.ledger")
    assert can_pub(op, "harmony.m.b.ask._op.agent.site")
    assert can_pub(op, "harmony.m._all.snapshot") and can_pub(op, "harmony.m.a.snapshot")
    assert can_pub(op, f"$JS.API.DIRECT.GET.{S}.$KV.{B}.ledger")
    for bad in (
        "harmony.m.a.ask.a.agent.site",
        "harmony.m.a.hb",
        "harmony.m.a.event",
        f"$KV.{B}.ledger",
        f"$JS.API.STREAM.CREATE.{S}",
        f"$JS.API.STREAM.DELETE.{S}",
        f"$JS.API.CONSUMER.CREATE.{S}.x",
        "_INBOX.m.a.x",
    ):
        assert not can_pub(op, bad), bad
    assert can_sub(op, "harmony.m.*.event") and can_sub(op, "harmony.m.*.hb")
    assert can_sub(op, "_INBOX.m._op.admin.>")
    for bad in (">", "harmony.m.a.ask.>", "_INBOX.m._op.other.>", "_INBOX.m.a.>"):
        assert not can_sub(op, bad), bad
    assert not op.allow_responses


def test_reader_cannot_ask_or_tell() -> None:
    reader = identity_permissions(M, "watch", "UR", "reader", ["ledger"])
    for verb in subjects.VERBS:
        assert not can_pub(reader, f"harmony.m.a.{verb}._op.agent.site")
        assert not any(verb in p for p in reader.publish)
    assert can_pub(reader, "harmony.m._all.snapshot")
    assert can_sub(reader, "harmony.m.*.event")
    with pytest.raises(ValueError, match="unknown role"):
        identity_permissions(M, "x", "UR", "admin", ["ledger"])


def test_mesh_users_one_per_roster_entry_with_lease_scope() -> None:
    keys = {n: key() for n in ("a", "b", "c", "admin", "watch")}
    roster = Roster(
        mesh=M,
        sites={"a": keys["a"], "b": keys["b"], "c": keys["c"]},
        identities={
            "admin": IdentityEntry(keys["admin"], "operator"),
            "watch": IdentityEntry(keys["watch"], "reader"),
        },
    )
    scope = lease_scope([("ledger", ["a", "b"]), ("db", ["b", "c"])])
    assert scope == {"a": ("ledger",), "b": ("db", "ledger"), "c": ("db",)}
    users = {u.name: u for u in mesh_users(roster, scope)}
    assert {u.nkey for u in users.values()} == set(keys.values())
    assert [users[n].role for n in ("a", "admin", "watch")] == ["site", "operator", "reader"]
    db = lease_bucket(M, "db")
    assert can_pub(users["b"], f"$KV.{db}.db") and can_pub(users["b"], f"$KV.{B}.ledger")
    assert not can_pub(users["a"], f"$KV.{db}.db")
    # A site outside a topology watches that lease (role "none"), cannot make or lead it.
    assert can_pub(users["a"], f"$JS.API.CONSUMER.CREATE.KV_{db}")
    assert not can_pub(users["a"], f"$JS.API.STREAM.CREATE.KV_{db}")
    assert not can_pub(users["a"], f"$JS.API.STREAM.LEADER.STEPDOWN.KV_{db}")
    assert not can_pub(users["c"], f"$KV.{B}.ledger")
    # Only a site of the topology may move its lease stream's leader (to itself).
    assert can_pub(users["a"], f"$JS.API.STREAM.LEADER.STEPDOWN.{S}")
    assert not can_pub(users["c"], f"$JS.API.STREAM.LEADER.STEPDOWN.{S}")
    assert not can_pub(users["admin"], f"$JS.API.STREAM.LEADER.STEPDOWN.{S}")
    # An operator reads every lease this server knows of, writes none.
    assert can_pub(users["admin"], f"$JS.API.STREAM.INFO.KV_{db}")
    assert not can_pub(users["admin"], f"$KV.{db}.db")


def test_core_and_edge_users() -> None:
    """Named cores: every site reads the core list and a core writes it; an edge's leaf link
    may also publish to the mesh's inboxes (its replies). No cores named: as before."""
    roster = Roster(mesh=M, sites={s: key() for s in ("a", "b", "c", "e1")})
    plain = {u.name: u for u in mesh_users(roster, {})}
    users = {u.name: u for u in mesh_users(roster, {}, cores=("a", "b", "c"))}
    info, inbox = "$KV.harmony-m-mesh.cores", f"_INBOX.{M}.a.x1"
    assert can_pub(users["a"], info) and not can_pub(users["e1"], info)
    read = "$JS.API.STREAM.INFO.KV_harmony-m-mesh"
    assert can_pub(users["a"], read) and can_pub(users["e1"], read)
    assert can_pub(users["e1"], inbox) and can_pub(users["e1"], f"_INBOX.{M}._op.admin.x")
    assert not can_pub(users["a"], inbox)
    assert not can_pub(users["e1"], "_INBOX.other.a.x1")
    for u in plain.values():
        assert not can_pub(u, info) and not can_pub(u, read) and not can_pub(u, inbox)
    assert {n: u.subscribe for n, u in plain.items()} == {n: u.subscribe for n, u in users.items()}


def test_roster_errors_name_the_file_and_field() -> None:
    good = key()
    with pytest.raises(ConfigError) as e:
        parse_roster(f'mesh = "m"\n[sites]\na = "{good}"\nb = "SUABC"\n', "r.toml")
    assert e.value.file == "r.toml" and e.value.field == "sites.b"
    with pytest.raises(ConfigError) as e:
        parse_roster(f'mesh = "m"\n[sites]\na = "{good}"\nb = "{good}"\n', "r.toml")
    assert "the same key" in e.value.reason
    with pytest.raises(ConfigError) as e:
        parse_roster('mesh = "m"\n[identities.x]\nnkey = "U"\nrole = "god"\n', "r.toml")
    assert "identities.x.role" in e.value.field
    with pytest.raises(ConfigError) as e:
        parse_roster('mesh = "m m"\n', "r.toml")
    assert e.value.field == "mesh"


def test_only_user_nkeys_with_a_good_checksum_are_keys() -> None:
    k = key()
    assert valid_user_key(k)
    assert not valid_user_key(k[:-1] + ("A" if k[-1] != "A" else "B"))
    assert not valid_user_key("A" + k[1:])
    assert not valid_user_key(new_user_seed().decode())
