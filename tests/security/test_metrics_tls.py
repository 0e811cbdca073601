"""Metrics beyond loopback are served over mutual TLS: a scraper with a certificate of the mesh
reads them; one without a certificate, or speaking plain HTTP, reads nothing. (The HTTP
server is real; the agent behind it is a stand-in: what is tested is who may read.)"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from harmony.actors.messages import Snapshot
from harmony.actors.metrics import serve_metrics
from harmony.config import MetricsConfig, SiteConfig
from harmony.mesh.ports import free_ports
from harmony.security.identity import load_identity, site_identity
from harmony.security.material import init_mesh


class StandIn:
    """Just enough of an agent for a scrape: a config and an empty snapshot."""

    def __init__(self, port: int) -> None:
        self.config = SiteConfig(
            mesh="m", site="a", metrics=MetricsConfig(host="0.0.0.0", port=port)
        )
        self.journal = self.bridge = self.server = self.conn = None

    def snapshot(self) -> Snapshot:
        return Snapshot(
            mesh="m",
            site="a",
            witness=False,
            incarnation="x",
            mono=0.0,
            wall=0.0,
            actors=[],
            peers=[],
        )


@pytest.fixture
def served(tmp_path: Path):  # type: ignore[no-untyped-def]
    md = init_mesh(tmp_path / "mesh", "m", {"a": ["127.0.0.1"]}, operators=["op"])
    (port,) = free_ports(1)
    server = serve_metrics(StandIn(port), site_identity(md.path, "a"))  # type: ignore[arg-type]
    assert server is not None
    try:
        yield server, md, port
    finally:
        server.close()


def test_a_scraper_with_a_mesh_certificate_reads_the_metrics(served) -> None:  # type: ignore[no-untyped-def]
    server, md, port = served
    assert server.url == f"https://0.0.0.0:{port}/metrics"
    ctx = load_identity(md.identity_dir("op")).ssl_context()
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/metrics", context=ctx, timeout=10) as r:
        assert "harmony_jetstream_reachable" in r.read().decode()


def test_no_certificate_no_metrics(served) -> None:  # type: ignore[no-untyped-def]
    _, md, port = served
    ctx = ssl.create_default_context(cafile=str(md.path / "ca.pem"))  # verifies, presents none
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(f"https://127.0.0.1:{port}/metrics", context=ctx, timeout=10)


def test_plain_http_reads_nothing(served) -> None:  # type: ignore[no-untyped-def]
    _, _, port = served
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10)
