"""How `harmony` commands log: text for people, or one JSON object a line for machines.

A JSON line has the same names everywhere: ``time`` (UTC, ISO 8601), ``level``, ``site``,
``workload``, ``event``, ``message``, ``logger``, and ``token`` when there is one. A line
written for a journal event carries the journal's own names: its ``event`` is the journal
event's kind (``lease-acquired``, ``peer-silent``, ...) and its ``workload`` and ``token`` the
event's, so a log pipeline and `harmony sim check` speak of the same things. Any other line
has ``event`` = ``log``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import sys
from typing import Final, Literal

LogFormat = Literal["text", "json"]
LOG_FORMATS: Final[tuple[LogFormat, ...]] = ("text", "json")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
PLAIN_EVENT: Final = "log"
LOG_FORMAT_ENV: Final = "HARMONY_LOG_FORMAT"
"""The default of ``--log-format``: a unit's ``Environment=`` or a simulator sets it for the
agents it starts."""


class SiteFilter(logging.Filter):
    """Stamps every record with the site it was logged on (one agent, one site)."""

    def __init__(self, site: str) -> None:
        super().__init__()
        self.site = site

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "site", ""):
            record.site = self.site
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line; `extra={"workload": ..., "event": ..., "token": ...}` on a
    logging call fills those fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
            "level": record.levelname.lower(),
            "site": getattr(record, "site", ""),
            "workload": getattr(record, "workload", ""),
            "event": getattr(record, "event", PLAIN_EVENT),
            "message": record.getMessage(),
            "logger": record.name,
        }
        token = getattr(record, "token", None)
        if token is not None:
            line["token"] = token
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def json_line(event: str, message: str, **fields: object) -> str:
    """One JSON line with the same names as the logs' (for output that is not a log record,
    e.g. a simulation's steps); `fields` may set ``level``, ``site``, ``workload``, more."""
    line: dict[str, object] = {
        "time": datetime.datetime.now(datetime.UTC).isoformat(),
        "level": fields.pop("level", "info"),
        "site": fields.pop("site", ""),
        "workload": fields.pop("workload", ""),
        "event": event,
        "message": message,
    }
    line.update(fields)
    return json.dumps(line, ensure_ascii=False, default=str)


def setup_logging(level: str = "info", fmt: LogFormat = "text", site: str = "") -> None:
    """Log to stderr at `level` in `fmt`; `site` stamps every line (JSON has a field for it)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    if site:
        handler.addFilter(SiteFilter(site))
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO), handlers=[handler], force=True
    )


def add_log_format_argument(parser: argparse.ArgumentParser) -> None:
    default = os.environ.get(LOG_FORMAT_ENV, "text")
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=default if default in LOG_FORMATS else "text",
        help="text (for people) or json (one object a line: time, level, site, workload, "
        f"event, message); default ${LOG_FORMAT_ENV} or text",
    )
