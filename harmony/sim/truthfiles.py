"""The files of a run's ground truth: where they are, and reading them for `truth`.

The runner gives each copy ``HARMONY_RECORDS=<workdir>/records/<site>.<workload>.jsonl`` and
``HARMONY_LEDGER=<workdir>/ledger.db`` (per start of the mesh: a retried start lives in
``attempt-N``), and runs the `scanner.Scanner` into ``<workdir>/scans.jsonl``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harmony.actors.journal import JournalEvent
from harmony.sim.records import read_records
from harmony.sim.scanner import ScanFileError, read_scan_lines
from harmony.sim.truth import LedgerRow, Truth, build_truth

SCANS = "scans.jsonl"
LEDGER = "ledger.db"
RECORDS = "records"


@dataclass(frozen=True)
class TruthFiles:
    records: tuple[Path, ...] = ()
    scans: Path | None = None
    ledger: Path | None = None


def truth_files(workdir: Path, scans: Path | None = None) -> TruthFiles:
    """The ground truth a run left: ``records/*.jsonl`` and ``ledger.db`` of its last start
    (``<workdir>``, or its newest ``attempt-N`` sub-directory when the runner had to start
    the mesh again), and ``<workdir>/scans.jsonl`` (or `scans`); whatever of it exists."""
    attempts = sorted(
        (p for p in workdir.glob("attempt-*") if p.name[8:].isdigit() and (p / RECORDS).is_dir()),
        key=lambda p: int(p.name[8:]),
    )
    last = attempts[-1] if attempts else workdir
    records = tuple(sorted((last / RECORDS).glob("*.jsonl")))
    scans = scans if scans is not None else workdir / SCANS
    ledger = last / LEDGER
    return TruthFiles(
        records, scans if scans.is_file() else None, ledger if ledger.is_file() else None
    )


class TruthError(ValueError):
    """Ground truth that exists but cannot be read (names the file and why)."""


LedgerReader = Callable[[Path], Iterable[Any]]
"""`example_workload.read_ledger`: rows with id, site, token, pid, mono (or tuples)."""


def _ledger_row(r: Any) -> LedgerRow:
    """A row as the reader gives it: an object with the fields, or a tuple in that order."""
    if hasattr(r, "token"):
        return LedgerRow(int(r.id), str(r.site), int(r.token), int(r.pid), float(r.mono))
    return LedgerRow(int(r[0]), str(r[1]), int(r[2]), int(r[3]), float(r[4]))


def read_ledger_rows(path: Path, reader: LedgerReader | None = None) -> list[LedgerRow]:
    """The ledger's committed rows in commit order, through the example workload's reader."""
    if reader is None:
        from harmony.sim import example_workload

        reader = getattr(example_workload, "read_ledger", None)
        if reader is None:
            raise TruthError(f"{path}: no ledger reader (example_workload.read_ledger) here")
    try:
        return [_ledger_row(r) for r in reader(path)]
    except Exception as e:  # any reader failure: the file is named, the check not skipped
        raise TruthError(f"{path}: cannot read the ledger: {type(e).__name__}: {e}") from e


def load_truth(
    files: TruthFiles,
    events: Sequence[JournalEvent],
    horizon: float,
    ledger_reader: LedgerReader | None = None,
) -> Truth:
    """`build_truth` on a run's files, from the history's first journal event on; raises
    `TruthError` on a file it cannot read."""
    try:
        lines = read_scan_lines(files.scans) if files.scans is not None else None
    except ScanFileError as e:
        raise TruthError(str(e)) from e
    agents = [e.mono for e in events if e.incarnation != "sim"]
    since = min(agents, default=float("-inf"))
    origin = min((e.mono for e in events), default=0.0)
    truth = build_truth(read_records(files.records), lines, events, horizon, since, origin)
    if files.ledger is not None:
        truth.ledger = read_ledger_rows(files.ledger, ledger_reader)
    return truth
