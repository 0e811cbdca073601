"""A minimal recording copy for the checker's real-process tests, used when the example
workload of this checkout does not write records yet: ``start``, a ``tick`` every 50 ms,
``stop`` on SIGTERM, on the machine's monotonic clock (`harmony.sim.records`)."""

from __future__ import annotations

import os
import signal
import time
from types import FrameType

from harmony.sim.records import RECORDS_ENV, Kind, Record, append_record, open_records


def main() -> None:
    fd = open_records(os.environ[RECORDS_ENV])
    site, workload = os.environ["HARMONY_SITE"], os.environ["HARMONY_WORKLOAD"]
    token = int(os.environ["HARMONY_FENCING_TOKEN"])

    def record(kind: Kind) -> None:
        now = time.monotonic()
        append_record(
            fd,
            Record(
                kind=kind,
                site=site,
                workload=workload,
                pid=os.getpid(),
                mono=now,
                wall=now,
                token=token,
            ),
        )

    def stop(signum: int, frame: FrameType | None) -> None:
        record("stop")
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    record("start")
    while True:
        time.sleep(0.05)
        record("tick")


if __name__ == "__main__":
    main()
