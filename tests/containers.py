"""Docker helpers for tests: is an engine there, and a NATS image built without a registry.

No registry is reachable from these machines, so the image is made with ``docker import`` of a
tarball holding only the static nats-server binary of the venv (the Engine API call behind
``docker import``, through the Docker SDK).
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from pathlib import Path

import docker
import docker.errors

from harmony.mesh.server import nats_server_binary

__all__ = ["build_nats_image", "docker_available", "docker_unavailable_reason", "nats_version"]


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
