"""A workload's own records: what the copy itself says it did, on the machine's monotonic clock.

The ground truth of the simulator's safety checks. The example workload (and any command a
scenario wraps with it) appends one JSON object a line to ``$HARMONY_RECORDS``:

* ``start``: the copy began, with its token and pid;
* ``tick``: the copy acted as the active copy at ``mono`` (every 50 ms by default);
* ``write``: a write through the fencing-token guard was committed (``detail``: the row id;
  a SIGKILL between commit and record loses the record, so the ledger is the truth for writes);
* ``write-rejected``: the guard refused a write with a stale token;
* ``self-fenced``: the copy found its fence deadline passed and stops acting;
* ``stop``: the copy exits (SIGTERM, or after self-fencing).

Several processes may append to one file: each record is one ``O_APPEND`` write of one
short line, which the kernel never interleaves. A torn last line (a copy killed mid-write)
is skipped when reading.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import msgspec

RECORDS_ENV = "HARMONY_RECORDS"
LEDGER_ENV = "HARMONY_LEDGER"

Kind = Literal["start", "tick", "write", "write-rejected", "self-fenced", "stop"]


class Record(msgspec.Struct, frozen=True, kw_only=True):
    kind: Kind
    site: str
    workload: str
    pid: int
    mono: float
    wall: float
    token: int | None = None
    detail: str = ""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Record)


def append_record(fd: int, record: Record) -> None:
    """Append one record to an ``O_APPEND`` descriptor: a single write of one line."""
    os.write(fd, _encoder.encode(record) + b"\n")


def open_records(path: str | Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def read_records(paths: Iterable[Path]) -> list[Record]:
    """Every complete record of these files, ordered by `mono`."""
    out: list[Record] = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError:
            continue
        for line in data.splitlines():
            try:
                out.append(_decoder.decode(line))
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
    return sorted(out, key=lambda r: r.mono)
