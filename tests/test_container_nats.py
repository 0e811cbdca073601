"""nats-server in a Docker container (testcontainers): a JetStream KV round trip with CAS."""

from __future__ import annotations

import nats
import pytest
from conftest import run_async
from nats.js.errors import KeyWrongLastSequenceError

pytestmark = pytest.mark.docker


def test_kv_cas_roundtrip_in_container(nats_container: str) -> None:
    assert nats_container.startswith("nats://")

    async def roundtrip() -> None:
        nc = await nats.connect(servers=[nats_container], connect_timeout=5)
        try:
            js = nc.jetstream(timeout=5)
            kv = await js.create_key_value(bucket="containerized", history=5)
            rev1 = await kv.create("lease", b"site-a")
            with pytest.raises(KeyWrongLastSequenceError):
                await kv.create("lease", b"site-b")
            rev2 = await kv.update("lease", b"site-a-renewed", last=rev1)
            assert rev2 > rev1
            with pytest.raises(KeyWrongLastSequenceError):
                await kv.update("lease", b"stale-writer", last=rev1)
            entry = await kv.get("lease")
            assert (entry.value, entry.revision) == (b"site-a-renewed", rev2)
            info = await js.account_info()
            assert info.streams >= 1  # JetStream is really on in the container
        finally:
            await nc.close()

    run_async(roundtrip(), timeout=30)
