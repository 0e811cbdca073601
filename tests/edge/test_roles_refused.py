"""A site whose core list disagrees with the mesh's is refused at join (exit 2, both lists
named), like a site whose lease timings disagree with the lease bucket."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from support.meshes import FAST_HEARTBEATS

from harmony.actors.journal import read_journal
from harmony.sim.launch import LaunchError, LocalMesh

pytestmark = pytest.mark.mesh


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[LocalMesh]:
    m = LocalMesh(
        tmp_path, mesh="roles", sites=("a", "b", "c", "e1"), cores=3, timings=FAST_HEARTBEATS
    )
    try:
        paths = m.write_configs()
        data = tomllib.loads(paths["e1"].read_text())
        data["nats"]["cores"] = ["a", "b", "x"]
        paths["e1"].write_text(tomli_w.dumps(data))
        m.start(["a", "b", "c"], timeout=90)
        yield m
    finally:
        m.stop()


def test_an_edge_naming_other_cores_is_refused(mesh: LocalMesh) -> None:
    with pytest.raises(LaunchError, match="agent e1 exited with 2") as refused:
        mesh.start(["e1"], timeout=90)
    said = str(refused.value)
    assert "the mesh's cores are a, b, c" in said
    assert "this site's nats.cores are a, b, x" in said
    assert str(mesh.procs["e1"].config_path) in said
    journal = read_journal(Path(mesh.configs["e1"].data_dir) / "journal.jsonl")
    assert [e.kind for e in journal if e.kind == "agent-refused"] == ["agent-refused"]
