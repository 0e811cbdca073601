"""Where `MeshConnection` hooks into nats-py for TLS: each hook checks nats-py's internals
first and is skipped (returns False) when they are not what it expects.

- `install_tls`: nats-py's `TcpTransport.connect_tls`, replaced per transport object: our TLS
  layer (`harmony.mesh.tls`) with the ``write`` fast path; otherwise nats-py's own, fixed to
  retry after a failed first handshake (`_nats_connect_tls`).
- `require_tls`: a client given a TLS context never follows a server into plaintext.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import ssl
from typing import Any
from urllib.parse import ParseResult

from nats.aio.client import Client
from nats.aio.transport import TcpTransport

from harmony.mesh.tls import connect_tls_layer

_INSTALLED = "_harmony_tls"


def _not_ssl_eof_noise(record: logging.LogRecord) -> bool:
    """asyncio warns on every TLS connection a server closes ("returning true from
    eof_received() has no effect when using ssl": nats-py's protocol asks to keep a half-open
    socket, which TLS cannot). It says nothing about our connection; keep it off the logs."""
    return "eof_received() has no effect when using ssl" not in record.getMessage()


logging.getLogger("asyncio").addFilter(_not_ssl_eof_noise)


def tls_supported() -> bool:
    """Whether this nats-py has the internals `install_tls` relies on (2.x has)."""
    hook = getattr(Client, "_connect_to_server", None)
    connect_tls = getattr(TcpTransport, "connect_tls", None)
    if hook is None or connect_tls is None:
        return False
    if list(inspect.signature(hook).parameters) != ["self", "s"]:
        return False
    params = list(inspect.signature(connect_tls).parameters)
    if params != ["self", "uri", "ssl_context", "buffer_size", "connect_timeout"]:
        return False
    fresh = TcpTransport()  # type: ignore[no-untyped-call]
    return hasattr(fresh, "_io_writer") and hasattr(fresh, "_io_reader")


def install_tls(nc: Client, lock: Any | None) -> bool:
    """Give `nc`'s TCP transports our `connect_tls`; False if this nats-py is not as expected.

    With a `lock`, TLS runs through `TlsTransport` (direct writes under that lock). Without
    one (no ``write`` fast path), nats-py's own TLS runs, wrapped only to close the pre-TLS
    stream when its handshake fails (`_nats_connect_tls`). nats-py creates its `TcpTransport`
    in `_connect_to_server`; we shadow that method on this client object to set `connect_tls`
    on each new transport (an instance attribute).
    """
    if not tls_supported():
        return False
    original = nc._connect_to_server

    async def connect_to_server(s: Any) -> None:
        await original(s)
        t = nc._transport
        if type(t) is TcpTransport and not getattr(t, _INSTALLED, False):
            connect = (
                functools.partial(connect_tls_layer, t, lock)
                if lock is not None
                else functools.partial(_nats_connect_tls, t)
            )
            t.connect_tls = connect  # type: ignore[method-assign]
            setattr(t, _INSTALLED, True)

    nc._connect_to_server = connect_to_server  # type: ignore[method-assign]
    return True


async def _nats_connect_tls(
    transport: TcpTransport,
    uri: str | ParseResult,
    ssl_context: ssl.SSLContext,
    buffer_size: int,
    connect_timeout: int,
) -> None:
    """nats-py's `connect_tls`, with one fix: when the handshake fails, the plain stream's
    protocol hears that the stream is gone.

    nats-py keeps that stream's writer until the handshake succeeds and, after a failed first
    connect, waits for it to close (`wait_closed`, no timeout); but the TLS upgrade took the
    stream's protocol away, so nothing ever tells it, and the connect loop hangs for good.
    """
    writer = transport._io_writer
    stream = writer.transport if writer is not None else None
    bare = stream.get_protocol() if stream is not None and hasattr(stream, "get_protocol") else None
    try:
        await TcpTransport.connect_tls(transport, uri, ssl_context, buffer_size, connect_timeout)
    except Exception as e:
        if stream is not None and transport._io_writer is writer:
            with contextlib.suppress(Exception):
                stream.abort()
            if isinstance(bare, asyncio.Protocol):
                with contextlib.suppress(Exception):
                    bare.connection_lost(e)
        raise


def require_tls(nc: Client) -> bool:
    """Make `nc` upgrade every connection to TLS, whatever the server's INFO says.

    nats-py starts TLS only when the server's INFO (sent in the clear) says
    ``tls_required``: a server without TLS, or anyone in the path who rewrites INFO, would
    get a client configured for TLS to talk in the clear. A client given a TLS context
    must refuse that; with ``tls_required`` forced, the handshake fails instead. False if
    this nats-py's `_process_info` is not the one we know (the caller must then refuse).
    """
    original = getattr(nc, "_process_info", None)
    if original is None:
        return False
    if list(inspect.signature(original).parameters) != ["info", "initial_connection"]:
        return False

    async def process_info(info: dict[str, Any], initial_connection: bool = False) -> None:
        if initial_connection:
            info["tls_required"] = True
        await original(info, initial_connection)

    nc._process_info = process_info  # type: ignore[method-assign]
    return True
