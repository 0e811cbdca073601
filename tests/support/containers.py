"""Docker for tests: is an engine there, a NATS image built without a registry, a container.

No registry is reachable from these machines, so the image is made with ``docker import`` of a
tarball holding only the static nats-server binary of the venv (the Engine API call behind
``docker import``, through the Docker SDK).
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import docker.errors
import pytest

from harmony.mesh.server import nats_server_binary
from support.processes import tcp_port_open
from support.waiting import wait_until


def docker_unavailable_reason() -> str:
    """ "" when a Docker engine answers a ping, else why not."""
    try:
        client = docker.from_env(timeout=5)
    except docker.errors.DockerException as e:
        return f"no Docker client/engine: {e}"
    try:
        client.ping()
    except Exception as e:
        return f"Docker engine does not answer: {e}"
    finally:
        client.close()
    return ""


def docker_available() -> bool:
    return docker_unavailable_reason() == ""


def require_docker() -> None:
    """Skip the test without a Docker engine; fail it instead when CI must run it."""
    reason = docker_unavailable_reason()
    if not reason:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but Docker is unavailable, and CI must run Docker tests: {reason}")
    pytest.skip(f"Docker is unavailable ({reason}); set up an engine or run .ci/run")


def nats_version(binary: Path | None = None) -> str:
    """The version of the nats-server binary, e.g. "2.15.1"."""
    out = subprocess.run(
        [str(binary or nats_server_binary()), "--version"],
        check=True,
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout
    return out.strip().rsplit("v", 1)[-1]


def build_nats_image(tag: str | None = None) -> str:
    """Make (once) a local image whose entrypoint is the venv's nats-server; returns its tag.

    The default tag is ``harmony-nats:<nats-server version>``. Skips the build when the tag
    exists already.
    """
    binary = nats_server_binary()
    tag = tag or f"harmony-nats:{nats_version(binary)}"
    repository, _, version = tag.rpartition(":")
    if not repository or "/" in version:
        repository, version = tag, "latest"
    client = docker.from_env(timeout=120)
    try:
        try:
            client.images.get(tag)
            return tag
        except docker.errors.ImageNotFound:
            pass
        with tempfile.TemporaryDirectory(prefix="harmony-nats-image-") as tmp:
            tarball = Path(tmp) / "rootfs.tar"
            with tarfile.open(tarball, "w") as tar:
                info = tar.gettarinfo(str(binary), arcname="nats-server")
                info.mode = 0o755
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                with open(binary, "rb") as f:
                    tar.addfile(info, f)
                tmpdir = tarfile.TarInfo("tmp")
                tmpdir.type = tarfile.DIRTYPE
                tmpdir.mode = 0o1777
                tar.addfile(tmpdir, io.BytesIO())
            client.api.import_image_from_file(
                str(tarball),
                repository=repository,
                tag=version,
                changes=['ENTRYPOINT ["/nats-server"]', "EXPOSE 4222 6222 8222"],
            )
        client.images.get(tag)  # raises if the import did not produce the tag
        return tag
    finally:
        client.close()


@contextmanager
def running_nats_container(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """nats-server (JetStream) in a container; yields ``nats://host:mapped_port``."""
    require_docker()
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
    from testcontainers.core.config import testcontainers_config
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import HttpWaitStrategy

    # The config reads the variable once and caches it; make sure no Ryuk (no registry).
    monkeypatch.setattr(testcontainers_config, "ryuk_disabled", True)

    image = build_nats_image()
    container = (
        DockerContainer(image)
        .with_command("-js -p 4222 -m 8222")
        .with_exposed_ports(4222, 8222)
        .waiting_for(
            HttpWaitStrategy(8222, "/healthz").with_startup_timeout(30).with_poll_interval(0.1)
        )
    )
    try:
        container.start()
        host = container.get_container_host_ip()
        port = int(container.get_exposed_port(4222))
        wait_until(
            lambda: tcp_port_open(host, port),
            timeout=15,
            message=lambda: (
                f"container client port {host}:{port} never accepted; logs: {container.get_logs()}"
            ),
        )
        yield f"nats://{host}:{port}"
    finally:
        container.stop()
