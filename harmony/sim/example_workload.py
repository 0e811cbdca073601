"""The example workload of the demo and the tests: a real process that says where it runs.

It prints one line a second with its site and fencing token, and exits cleanly on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
import time


def main() -> None:
    # Exit from the handler itself: a flag would wait out the current sleep (PEP 475).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    site = os.environ.get("HARMONY_SITE", "?")
    name = os.environ.get("HARMONY_WORKLOAD", "?")
    token = os.environ.get("HARMONY_FENCING_TOKEN", "-")
    n = 0
    try:
        while True:
            print(f"{name} serving on {site} (token {token}) #{n}", flush=True)
            n += 1
            time.sleep(1.0)
    finally:
        print(f"{name} on {site}: stopping", flush=True)


if __name__ == "__main__":
    main()
