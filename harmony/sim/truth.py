"""Ground truth: when each copy of a workload was *active*, from what the copies wrote and what
the process table showed; never from the journal (the journal says what agents believed).

Definition. A process belongs to the copy of (site, workload) when it carries that
containment's marker (`scanner`) or wrote that site's and workload's records (`records`);
the agent's own helpers that carry the marker (role ``harmony``: the tether) and the
stop/fence/probe hooks (role ``hook:*``) act *on* the copy and are not part of it.

1. A process that records is active from its ``start`` record to its first ``stop`` or
   ``self-fenced`` record (or its last act, tick or write, if later: an act is activity
   whatever was said before). Without an end record (SIGKILL, or still running) it is
   active until the later of its last record and the last scan that saw it, extended to
   where it was seen gone: its pidfd exit, or else the next scan that did not see it.
   Alive at the last scan: the end is unknown (active until the checks end). Without any
   scan of its containment (old histories): until its last record.
2. A process that does not record (a ``sh`` wrapper, a daemon a hook started) is active over
   every run of scans that saw it running (not frozen), widened to the observations around
   the run: from the previous scan that did not see it running (or its birth, if later) to
   the next scan that did not see it running (or its pidfd exit). A pidfd-watched process
   missing from a scan before its exit was missed by that scan, not gone.
3. Frozen time is not activity: a run of scans that saw the process frozen (state ``T``,
   from the first of them to the last), and a freeze of its whole site (the simulation's
   ``site-frozen`` ... ``site-thawed``), unless a record of the process or a scan that saw
   it running falls inside (evidence beats assumption). ``paused`` freezes only the agent,
   never the copy. The runner must stamp ``site-frozen`` after the last SIGSTOP was sent
   and ``site-thawed`` before the first SIGCONT.
4. The activity of a copy is the union of its processes' pieces per (site, workload,
   token), clipped at the horizon (the end of the checks); what ended before the history's
   first journal event (an earlier start of the mesh, torn down) is left out.

`build_truth` is pure (records, scan lines, faults in; intervals out); `truthfiles` finds
and reads a run's files.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from harmony import procfs
from harmony.actors.journal import JournalEvent
from harmony.sim.history import Interval
from harmony.sim.records import Record
from harmony.sim.scanner import Life, Line, ScanLog, scan_log

ACTS = {"tick", "write"}
ENDS = {"stop", "self-fenced"}
FREEZES = {"site-frozen": "site-thawed"}


class LedgerRow(NamedTuple):
    """One committed row of the shared ledger, in commit order."""

    id: int
    site: str
    token: int
    pid: int
    mono: float


@dataclass
class Truth:
    intervals: dict[str, list[Interval]]
    """workload -> activity intervals, for every workload with ground truth"""
    sources: dict[str, str]
    """workload -> what its ground truth rests on ("records + scans", ...)"""
    ledger: list[LedgerRow] | None = None
    owners: dict[tuple[str, int], str] = field(default_factory=dict)
    """(site, pid) -> workload, from the records: whose a ledger row is"""


# ------------------------------------------------------------------ pieces of activity
@dataclass(frozen=True)
class Piece:
    start: float
    end: float | None
    began: str
    ended: str
    resumed: str = ""


Window = tuple[float, float, str, str]
"""(from, to, resumed-kind, label) of a frozen stretch"""


def _t(t: float, origin: float) -> str:
    """A time as the report shows it: seconds since the history began."""
    return f"+{t - origin:.3f} s"


def _running(state: str) -> bool:
    return state not in procfs.FROZEN


def scan_pieces(life: Life, log: ScanLog, origin: float = 0.0) -> list[Piece]:
    """Rule 2: the runs of scans that saw `life` running, widened to their neighbours."""
    times, lo = log.times, log.first.get(life.cid, 0)
    if not life.obs:
        return []
    first, last = min(life.obs), max(life.obs)
    out: list[Piece] = []
    start: float | None = None
    began, resumed, prev = "", "", "absent"
    for i in range(first, last + 1):
        state = life.obs.get(i)
        if state is None and life.watched and (life.exit is None or times[i][1] < life.exit):
            continue  # a pidfd says it lived: this scan missed it
        now = "absent" if state is None else ("running" if _running(state) else "frozen")
        if now == "running" and start is None:
            if i == first:
                bounds = [b for b in (life.born,) if b is not None]
                bounds += [times[i - 1][0]] if i - 1 >= lo else []
                start = max(bounds) if bounds else times[i][0]
                began = (
                    f"born at {_t(start, origin)}"
                    if start == life.born
                    else f"scan at {_t(start, origin)}"
                )
                resumed = ""
            else:
                start, began = times[i - 1][0], f"seen running again after {prev}"
                resumed = "frozen" if prev == "frozen" else ""
        elif now != "running" and start is not None:
            what = "gone" if now == "absent" else "frozen"
            out.append(
                Piece(
                    start, times[i][1], began, f"seen {what} at {_t(times[i][0], origin)}", resumed
                )
            )
            start = None
        prev = now
    if start is not None:
        if life.exit is not None:
            out.append(
                Piece(start, life.exit, began, f"exit seen at {_t(life.exit, origin)}", resumed)
            )
        elif not life.watched and last + 1 < len(times):
            t = times[last + 1]
            out.append(Piece(start, t[1], began, f"seen gone at {_t(t[0], origin)}", resumed))
        else:
            out.append(Piece(start, None, began, "alive at the last scan", resumed))
    return out


def record_piece(
    seg: Sequence[Record], life: Life | None, log: ScanLog | None, origin: float = 0.0
) -> Piece:
    """Rule 1: one recorded life of a process (from one `start` record to the next)."""
    first = seg[0]
    began = "start record" if first.kind == "start" else f"first record ({first.kind})"
    acts = [r.mono for r in seg if r.kind in ACTS]
    end_rec = next((r for r in seg if r.kind in ENDS), None)
    if end_rec is not None:
        end = max([end_rec.mono, *acts])
        return Piece(first.mono, end, began, f"{end_rec.kind} record at {_t(end_rec.mono, origin)}")
    last = seg[-1].mono
    if log is None:
        return Piece(first.mono, last, began, f"last record at {_t(last, origin)} (no scans)")
    times = log.times
    if life is not None and life.exit is not None:
        end = max(last, life.exit)
        return Piece(first.mono, end, began, f"no end record; exit seen at {_t(life.exit, origin)}")
    seen = max(life.obs) if life is not None and life.obs else -1
    after = next((i for i in range(seen + 1, len(times)) if times[i][0] > last), None)
    if (life is not None and life.watched) or after is None:
        return Piece(first.mono, None, began, "no end record; alive at the last scan")
    t = times[after]
    return Piece(
        first.mono, max(last, t[1]), began, f"no end record; gone at the scan at {_t(t[0], origin)}"
    )


def cut(
    piece: Piece, windows: Sequence[Window], evidence: Sequence[float], origin: float = 0.0
) -> list[Piece]:
    """Rule 3: `piece` minus the frozen windows that no evidence of running falls in."""
    out, cur = [], piece
    for w0, w1, kind, label in sorted(windows):
        end = cur.end if cur.end is not None else float("inf")
        if w1 <= cur.start or w0 >= end or any(w0 < t < w1 for t in evidence):
            continue
        if w0 > cur.start:
            out.append(
                Piece(
                    cur.start, w0, cur.began, f"frozen at {_t(w0, origin)} ({label})", cur.resumed
                )
            )
        if w1 >= end:
            return out
        cur = Piece(w1, cur.end, f"resumed at {_t(w1, origin)} ({label})", cur.ended, kind)
    return [*out, cur]


def freeze_windows(events: Iterable[JournalEvent]) -> dict[str, list[Window]]:
    """Per site, the whole-site freezes the simulation injected."""
    out: dict[str, list[Window]] = defaultdict(list)
    open_: dict[str, float] = {}
    for e in sorted(events, key=lambda e: e.mono):
        if e.incarnation != "sim":
            continue
        if e.kind in FREEZES:
            open_.setdefault(e.site, e.mono)
        elif e.kind in FREEZES.values() and e.site in open_:
            out[e.site].append((open_.pop(e.site), e.mono, "site", "its whole site frozen"))
    for site, t in open_.items():
        out[site].append((t, float("inf"), "site", "its whole site frozen"))
    return out


def frozen_runs(life: Life, log: ScanLog) -> list[Window]:
    """Runs of two or more scans that saw `life` frozen: frozen between the first and last."""
    out = []
    runs = itertools.groupby(sorted(life.obs.items()), key=lambda kv: _running(kv[1]))
    for running, group in runs:
        idx = [i for i, _ in group]
        if not running and len(idx) > 1:
            out.append(
                (log.times[idx[0]][1], log.times[idx[-1]][0], "frozen", "scans saw it frozen")
            )
    return out


def _segments(records: Sequence[Record]) -> list[list[Record]]:
    segs: list[list[Record]] = []
    for r in records:
        if r.kind == "start" or not segs:
            segs.append([])
        segs[-1].append(r)
    return segs


def _proc_name(pid: int, cmd: str, how: str) -> str:
    return f"pid {pid} {cmd[:60]} ({how})".replace("  ", " ")


def _life_for(seg: Sequence[Record], lives: Sequence[Life], log: ScanLog) -> Life | None:
    """The scanned life of the process that wrote `seg` (the first one still alive then)."""
    for x in lives:
        seen = [log.times[i][0] for i in x.obs] + [x.exit or float("-inf")]
        if max(seen) >= seg[0].mono:
            return x
    return None


def _running_at(life: Life | None, log: ScanLog | None) -> list[float]:
    if life is None or log is None:
        return []
    return [sum(log.times[i]) / 2 for i, s in life.obs.items() if _running(s)]


Item = tuple[Piece, int | None, str]
"""a piece, its acts (None: not recorded), the process behind it"""


def _merge(site: str, workload: str, token: int | None, items: list[Item]) -> list[Interval]:
    out: list[Interval] = []
    group: list[Item] = []

    def flush() -> None:
        if not group:
            return
        ends = [p.end for p, _, _ in group]
        end = None if None in ends else max(e for e in ends if e is not None)
        last = next(p for p, _, _ in group if p.end == end)
        acts = [a for _, a, _ in group]
        first = group[0][0]
        out.append(
            Interval(
                site,
                workload,
                first.start,
                end,
                token,
                last.ended,
                first.began,
                None if None in acts else sum(a for a in acts if a is not None),
                first.resumed,
                tuple(dict.fromkeys(name for _, _, name in group)),
            )
        )
        group.clear()

    reach: float | None = float("-inf")
    for item in sorted(items, key=lambda x: x[0].start):
        if group and (reach is None or item[0].start > reach):
            flush()
        if not group:
            reach = item[0].end
        elif reach is not None:
            reach = None if item[0].end is None else max(reach, item[0].end)
        group.append(item)
    flush()
    return out


def _clip(piece: Piece, horizon: float, since: float) -> Piece | None:
    if piece.start >= horizon or (piece.end is not None and piece.end <= since):
        return None
    if piece.end is not None and piece.end > horizon:
        return Piece(
            piece.start,
            horizon,
            piece.began,
            f"{piece.ended}; clipped at the end of checks",
            piece.resumed,
        )
    return piece


def build_truth(
    records: Sequence[Record],
    lines: Sequence[Line] | None,
    events: Sequence[JournalEvent],
    horizon: float,
    since: float = float("-inf"),
    origin: float = 0.0,
) -> Truth:
    """Activity intervals per workload (see the module docstring), from records, scanner
    lines (None: no scans) and the simulation's fault events; what ended before `since`
    (an earlier start of the mesh, torn down) is left out. Evidence gives times since
    `origin` (the history's first event, as the report does)."""
    log = scan_log(lines) if lines is not None else None
    freezes = freeze_windows(events)
    by_key: dict[tuple[str, str], dict[int, list[Record]]] = defaultdict(lambda: defaultdict(list))
    for r in sorted(records, key=lambda r: r.mono):
        by_key[(r.site, r.workload)][r.pid].append(r)
    keys = set(by_key) | (set(log.keys.values()) if log is not None else set())
    per_copy: dict[tuple[str, str, int | None], list[Item]] = defaultdict(list)
    kinds: dict[str, set[str]] = defaultdict(set)
    for site, w in sorted(keys):
        scanned = log if log is not None and log.watched(site, w) is not None else None
        lives = scanned.of(site, w) if scanned is not None else []
        kinds[w].update(["records"] if by_key.get((site, w)) else [])
        kinds[w].update(["scans"] if scanned is not None else [])
        for pid, recs in by_key.get((site, w), {}).items():
            mine = [x for x in lives if x.pid == pid]
            for seg in _segments(recs):
                life = _life_for(seg, mine, scanned) if scanned is not None else None
                windows = freezes.get(site, []) + (
                    frozen_runs(life, scanned) if life and scanned else []
                )
                evidence = [r.mono for r in seg] + _running_at(life, scanned)
                token = next((r.token for r in seg if r.token is not None), None)
                cmd = life.cmd if life is not None else ""
                for q in cut(record_piece(seg, life, scanned, origin), windows, evidence, origin):
                    c = _clip(q, horizon, since)
                    if c is None:
                        continue
                    end = c.end if c.end is not None else float("inf")
                    acts = sum(1 for r in seg if r.kind in ACTS and c.start <= r.mono <= end)
                    per_copy[(site, w, token)].append((c, acts, _proc_name(pid, cmd, "records")))
        recorded = set(by_key.get((site, w), {}))
        for life in lives:
            if life.pid in recorded or life.role != "copy" or scanned is None:
                continue
            evidence = _running_at(life, scanned)
            for p in scan_pieces(life, scanned, origin):
                for q in cut(p, freezes.get(site, []), evidence, origin):
                    c = _clip(q, horizon, since)
                    if c is not None:
                        name = _proc_name(life.pid, life.cmd, "scans")
                        per_copy[(site, w, life.token)].append((c, None, name))
    intervals: dict[str, list[Interval]] = {w: [] for _, w in keys}
    for (site, w, token), items in per_copy.items():
        intervals[w] += _merge(site, w, token, items)
    for w in intervals:
        intervals[w].sort(key=lambda i: i.start)
    sources = {w: " + ".join(sorted(k, reverse=True)) for w, k in kinds.items()}
    return Truth(intervals, sources, owners={(r.site, r.pid): r.workload for r in records})
