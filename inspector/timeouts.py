"""When flows end: the timeouts of ``analyze`` and of the live sensor.

A leaf module (no numpy, pandas or numba), so the command line can show
these defaults in ``--help`` without loading the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

from inspector.errors import InspectorError


@dataclass(frozen=True)
class Timeouts:
    """When flows end, in seconds of capture time (the packets' clock)."""

    idle: float = 300.0        # no packet for this long: the flow ended (Zeek's TCP inactivity timeout)
    after_close: float = 5.0   # after FIN from both sides or a RST, late ACKs and retransmissions still join
    active: float | None = None  # report a flow still open after this long (interim, it goes on)
    sweep: float = 30.0        # look for ended flows this often
    batch: int = 1             # ... and close them once at least this many ended (each close costs ~10 ms of
                               # table building whatever its size; flows that wait still end exactly as they would)
    most: int | None = None    # close at most this many at once, the rest right after the next read of the pipe:
                               # packets are read between closes (the sensor: ~0.4 ms a flow, 20,000 flows ended
                               # at once stopped its reading for 8 s)

    def __post_init__(self) -> None:
        for name in ("idle", "after_close", "active", "sweep", "batch", "most"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise InspectorError(f"timeout {name} must be a positive number of seconds, "
                                     f"not {value}")


DEFAULT_TIMEOUTS = Timeouts(batch=1024)
"""``analyze``'s defaults: flows end after 300 s idle or 5 s after FIN/RST; those
that ended are classified 1,024 at a time (at the latest when the input ends)."""
LIVE_TIMEOUTS = Timeouts(active=1800.0, sweep=1.0, most=1024)
"""The sensor's defaults: flows end after 300 s idle or 5 s after FIN/RST
(looked for every second, classified 1,024 at most between two batches of
packets), long flows are reported every 30 minutes."""
