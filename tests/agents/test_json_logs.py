"""`--log-format json`: a real agent's log is one JSON object a line, with the journal's names
(a journal event's kind is the line's ``event``), and `harmony sim run` hands the format to
the agents it starts."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
from support.waiting import wait_until
from support.workloads import sleeper

from harmony.actors.journal import read_journal
from harmony.logs import LOG_FORMAT_ENV, JsonFormatter
from harmony.sim.launch import LocalMesh

FIELDS = {"time", "level", "site", "workload", "event", "message", "logger"}


def json_lines(path: Path) -> list[dict[str, object]]:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    objects = [json.loads(line) for line in lines]  # a line that is not JSON fails here
    assert all(isinstance(o, dict) for o in objects)
    return objects


@pytest.mark.mesh
def test_agent_logs_json_with_the_journals_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LOG_FORMAT_ENV, "json")  # what `harmony sim run --log-format` sets
    mesh = LocalMesh(tmp_path, mesh="logs", sites=("a", "b"), workloads=[sleeper("w", "a", ["b"])])
    try:
        mesh.start(timeout=90)
        journal = tmp_path / "a" / "journal.jsonl"
        wait_until(
            lambda: any(e.workload == "w" for e in read_journal(journal)),
            timeout=60,
            message="a journals the workload",
        )
    finally:
        mesh.stop()
    lines = json_lines(mesh.procs["a"].log_path)
    assert lines, "the agent logged nothing"
    for line in lines:
        assert line.keys() >= FIELDS, line
        assert line["site"] == "a"
    kinds = {e.kind for e in read_journal(journal)}
    events = {str(line["event"]) for line in lines}
    assert kinds <= events, f"journal kinds missing from the log: {kinds - events}"
    started = [ln for ln in lines if ln["event"] != "log" and ln["workload"] == "w"]
    assert started, "no journal event of workload w in the log"


def test_json_formatter_keeps_exceptions_and_tokens() -> None:
    fmt = JsonFormatter()
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "x %s", ("y",), sys.exc_info())
    record.event, record.token = "fence-failed", 7
    line = json.loads(fmt.format(record))
    assert line["message"] == "x y" and line["level"] == "error"
    assert line["event"] == "fence-failed" and line["token"] == 7
    assert "ValueError: boom" in line["exception"]
    assert line["time"].endswith("+00:00")
