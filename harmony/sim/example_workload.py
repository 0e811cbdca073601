"""The example workload of the demo and the tests: a real process that says where it runs.

It prints one line a second with its site and fencing token, and exits cleanly on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
import time


def main() -> int:
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    site = os.environ.get("HARMONY_SITE", "?")
    name = os.environ.get("HARMONY_WORKLOAD", "?")
    token = os.environ.get("HARMONY_FENCING_TOKEN", "-")
    n = 0
    while not stop:
        print(f"{name} serving on {site} (token {token}) #{n}", flush=True)
        n += 1
        time.sleep(1.0)
    print(f"{name} on {site}: stopping", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
