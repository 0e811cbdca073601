"""`harmony mesh` material on disk, the `[security]` section, and refusing to run exposed."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from support.commands import harmony

from harmony.config import ConfigError, load_config
from harmony.config_check import check
from harmony.security.identity import load_identity, public_key_of
from harmony.security.material import MaterialError, MeshDir, init_mesh


def site_toml(path: Path, site: str, host: str = "127.0.0.1", security: str = "") -> Path:
    path.write_text(f'mesh = "m"\nsite = "{site}"\n[nats]\nhost = "{host}"\n{security}')
    return path


def test_mesh_init_makes_private_keys_and_refuses_to_overwrite(tmp_path: Path) -> None:
    root = tmp_path / "mesh"
    out = harmony("mesh", "init", str(root), "--mesh", "m", "--site", "a", "--site", "b=10.0.0.2")
    assert out.returncode == 0, out.stderr
    assert "OFFLINE" in out.stdout and str(root / "ca.key") in out.stdout
    for secret in ("ca.key", "identities-ca.key", "sites/a/key.pem", "sites/a/nkey.seed"):
        assert stat.S_IMODE((root / secret).stat().st_mode) == 0o600, secret
    for d in ("", "sites", "sites/a", "sites/b"):
        assert stat.S_IMODE((root / d).stat().st_mode) == 0o700, d
    again = harmony("mesh", "init", str(root), "--mesh", "m", "--site", "a")
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr
    roster = MeshDir(root).roster()
    assert set(roster.sites) == {"a", "b"}
    assert roster.sites["a"] == public_key_of(root / "sites/a/nkey.seed")


def test_add_and_rotate_change_the_roster(tmp_path: Path) -> None:
    md = init_mesh(tmp_path / "m", "m", {"a": ()})
    key = md.add_identity("admin", "operator")
    assert md.roster().identities["admin"].nkey == key
    assert load_identity(md.identity_dir("admin")).inbox_prefix == "_INBOX.m._op.admin"
    md.add_site("b", ["b.example"])
    old = md.roster().sites["b"]
    new = md.rotate("b")
    assert new != old and md.roster().sites["b"] == new
    assert public_key_of(md.site_dir("b") / "nkey.seed") == new
    with pytest.raises(MaterialError, match="already a site"):
        md.add_identity("b", "reader")
    with pytest.raises(MaterialError, match="no site or identity"):
        md.rotate("nobody")


def test_security_files_are_checked_when_the_config_loads(tmp_path: Path) -> None:
    init_mesh(tmp_path / "mesh", "m", {"a": ()})
    cfg_file = site_toml(tmp_path / "a.toml", "a", security='[security]\ndir = "mesh"\n')
    cfg = load_config(cfg_file)
    assert cfg.security is not None and cfg.security.dir == str(tmp_path / "mesh")
    (tmp_path / "mesh/sites/a/nkey.seed").unlink()
    with pytest.raises(ConfigError) as e:
        load_config(cfg_file)
    assert e.value.field == "security.dir" and "sites/a/nkey.seed" in e.value.reason
    site_toml(cfg_file, "a", security="[security]\n")
    with pytest.raises(ConfigError) as e:
        load_config(cfg_file)
    assert e.value.field == "security.dir" and "insecure = true" in e.value.reason


def test_an_exposed_host_without_security_is_refused_unless_insecure(tmp_path: Path) -> None:
    exposed = site_toml(tmp_path / "a.toml", "a", host="0.0.0.0")
    with pytest.raises(ConfigError) as e:
        load_config(exposed)
    assert e.value.field == "security" and "insecure = true" in e.value.reason
    out = harmony("agent", "--config", str(exposed))
    assert out.returncode == 2
    assert "not loopback" in out.stderr and "insecure = true" in out.stderr
    site_toml(exposed, "a", host="0.0.0.0", security="[security]\ninsecure = true\n")
    assert load_config(exposed).security is not None
    assert load_config(site_toml(tmp_path / "b.toml", "b")).security is None  # loopback


def test_config_check_says_how_a_site_is_protected_and_catches_stale_keys(
    tmp_path: Path,
) -> None:
    md = init_mesh(tmp_path / "mesh", "m", {"a": (), "b": ()})
    sec = '[security]\ndir = "mesh"\n'
    a = site_toml(tmp_path / "a.toml", "a", security=sec)
    b = site_toml(tmp_path / "b.toml", "b", security=sec)
    report = check([str(a), str(b)])
    assert not report.problems, report.problems
    c = site_toml(tmp_path / "c.toml", "c")
    mixed = check([str(a), str(c)])
    assert any(p.field == "security" and "insecure" in p.reason for p in mixed.problems)
    stale = (md.site_dir("a") / "nkey.seed").read_bytes()
    md.rotate("a")
    (md.site_dir("a") / "nkey.seed").write_bytes(stale)
    report = check([str(a)])
    assert [p.field for p in report.problems] == ["security.dir"]
    assert "not the key" in report.problems[0].reason


def test_a_secure_server_conf_locks_every_port(tmp_path: Path) -> None:
    from harmony.mesh.conf_text import render_conf
    from harmony.mesh.server_conf import ServerSpec

    md = init_mesh(tmp_path / "mesh", "m", {"a": (), "b": ()}, ["admin"])
    route = 'routes = ["nats-route://10.0.0.2:6222"]\n'
    cfg_file = site_toml(
        tmp_path / "a.toml", "a", host="0.0.0.0", security=route + '[security]\ndir = "mesh"\n'
    )
    spec = ServerSpec.from_config(load_config(cfg_file))
    conf = render_conf(spec)
    assert f'http: "127.0.0.1:{spec.http_port}"' in conf
    assert spec.http_url.startswith("http://127.0.0.1:")
    assert conf.count("verify: true") == 2  # client port and route port
    assert str(md.site_dir("a") / "clients-ca.pem") in conf  # clients: both CAs
    cluster = conf[conf.index("cluster {") :]
    assert str(md.site_dir("a") / "ca.pem") in cluster  # routes: the mesh CA only
    assert "clients-ca.pem" not in cluster
    roster = md.roster()
    for key in [*roster.sites.values(), *(i.nkey for i in roster.identities.values())]:
        assert f'nkey: "{key}"' in conf
    assert "no_auth_user" not in conf and "authorization" not in conf


def test_an_agent_whose_seed_is_not_in_the_roster_is_refused_before_it_starts(
    tmp_path: Path,
) -> None:
    md = init_mesh(tmp_path / "mesh", "m", {"a": ()})
    cfg_file = site_toml(tmp_path / "a.toml", "a", security='[security]\ndir = "mesh"\n')
    stale = (md.site_dir("a") / "nkey.seed").read_bytes()
    md.rotate("a")
    (md.site_dir("a") / "nkey.seed").write_bytes(stale)
    out = harmony("agent", "--config", str(cfg_file))
    assert out.returncode == 2, out.stderr
    assert "is not the key" in out.stderr and "nkey.seed" in out.stderr


def test_a_key_others_can_read_is_refused(tmp_path: Path) -> None:
    md = init_mesh(tmp_path / "mesh", "m", {"a": ()}, ["admin"])
    (md.identity_dir("admin") / "nkey.seed").chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        load_identity(md.identity_dir("admin"))
