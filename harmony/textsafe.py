"""Text that crosses a trust boundary: URLs shown to people, and remote strings on a terminal.

Stdlib only and imported by every layer (mesh, actors, cli, tui), so it sits below them all.
Both functions are total: they are called on the way to a log line or a screen, where an
exception would hide the very thing being shown (or crash the view), so junk in means a
best-effort string out, never a raise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "***"

_USERINFO = re.compile(
    # A URL's userinfo: after a scheme's "//", or a bare netloc ("user:pass@host") at the start
    # of the text or after a separator. The password runs to the LAST "@" before the host's
    # path/query (as urllib reads it), so "p@ss" inside a password is hidden too.
    r"(?P<pre>[A-Za-z][A-Za-z0-9+.\-]*://|^|(?<=[\s,;(\[<'\"=]))"
    r"(?P<user>[^\s/?#@:,;'\"]*)"
    r"(?::(?P<pw>[^\s/?#]*))?"
    r"@"
)


def _redact_one(m: re.Match[str]) -> str:
    if m.group("pw") is None:  # token-only ("nats://tok@host"): the user IS the secret
        return f"{m.group('pre')}{REDACTED}@"
    return f"{m.group('pre')}{m.group('user')}:{REDACTED}@"


def redact_url(url: str | Iterable[str]) -> str:
    """`url` with every password (and every token-only userinfo) replaced by ``***``.

    Takes a URL, a bare netloc, a text holding URLs (a log message, a comma-joined list) or a
    list of URLs (joined with ", "): what the caller shows is always one string.
    """
    try:
        if not isinstance(url, str):
            url = ", ".join(str(u) for u in url)
        if len(url) > REDACT_LIMIT:
            url = _cut(url)
        return _USERINFO.sub(_redact_one, url)
    except Exception:  # junk: say nothing of it rather than risk showing a secret
        return "<unprintable url>"


REDACT_LIMIT = 2048
"""The matcher backtracks (quadratic on hostile input): a longer text is cut first."""


def _cut(text: str) -> str:
    """`text` cut to `REDACT_LIMIT` at whitespace, which a URL cannot hold: a credential is
    never cut in two (its first half would no longer look like one, and would show)."""
    head = text[:REDACT_LIMIT]
    at = max(head.rfind(" "), head.rfind("\n"), head.rfind("\t"))
    if at <= 0:
        return f"<{len(text)} characters, not shown>"
    return head[:at] + f" …({len(text) - at} characters cut)"


def redact_urls(urls: Iterable[str]) -> list[str]:
    """Each of `urls` redacted (for places that keep a list, e.g. an error's `tried`)."""
    try:
        return [redact_url(u) for u in urls]
    except Exception:
        return ["<unprintable url>"]


_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"  # CSI: colours, cursor moves, clear screen (ESC[2J)
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # OSC: title, clipboard (52), link
    r"|(?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c]*(?:\x1b\\|\x9c)?"  # DCS, SOS, PM, APC
    r"|\x1b[ -/]*[0-~]?"  # any other escape (charset switches, RIS "ESC c", ...)
)
"""Whole sequences are removed, not only their ESC: the payload of an OSC left behind would
still be noise, and a partial sequence could combine with what follows on the terminal."""

_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
"""C0 and C1 controls, plus zero-width and bidi overrides (text that reads other than it is).
Tab and newline are not here: they become spaces (one line per remote string)."""

DEFAULT_LIMIT = 512


def printable(text: object, limit: int = DEFAULT_LIMIT) -> str:
    """`text` made safe for a terminal: escape sequences and control characters removed,
    tabs and newlines made spaces, at most `limit` characters (ending in "…" when cut)."""
    try:
        s = text if isinstance(text, str) else str(text)
        if len(s) > 8 * limit + 64:  # bound the work on a huge remote string first
            s = s[: 8 * limit + 64]
        s = _ESCAPES.sub("", s)
        s = _CONTROLS.sub("", s.replace("\t", " ").replace("\n", " ").replace("\r", ""))
        if len(s) > limit:
            s = s[: max(0, limit - 1)] + "…"
        return s
    except Exception:
        return "<unprintable>"
