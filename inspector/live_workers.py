"""The sensor on N capture processes: ``inspector live --workers N``.

One tcpdump, and so one core decoding its pipe, is the sensor's limit. With
N workers the parent compiles the kernels (``warm_up``), then forks N
capture processes; process ``k`` runs tcpdump with the sensor's filter AND
partition ``k`` of a symmetric flow hash (``inspector.live_partition``), so
the kernel hands each packet to exactly one of them and both directions of
a flow to the same one, and runs the whole pipeline (``run_sensor``) on it.

What the processes hear goes to the parent through one queue and is told
by it in one stream: alerts as they fire, the ended flows (whole with
``--jsonl``, else only the notable ones its running events and findings are
made of), and stats, summed once every process has reported its round
(kernel drops of every tcpdump; interface drops measured once, by the
parent). Each process spools its ended flows to its own folder; at the stop
(``duration``, SIGINT or SIGTERM, passed on to every process) the parent
joins those tables and builds one ``Analysis`` over them (``assemble``: the
events and findings need every flow). A process that fails to start stops
the sensor with its reason; one whose tcpdump ends before the stop, or that
dies, is told at once, stops the others, and is an anomaly of the input.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from inspector.alerts import Alert, EvidenceFile, EvidencePcaps, rfc3339
from inspector.analysis import Analysis, assemble
from inspector.capture.constants import BUFFER_MB, SNAPLEN
from inspector.capture.reader import InputStats
from inspector.live import (
    LiveError,
    LiveStats,
    Sensor,
    capture_filter,
    check_filter,
    interface_drops_detail,
    run_sensor,
    rx_dropped,
    warm_up,
)
from inspector.live_partition import link_header_bytes, partitioned
from inspector.pipeline import ClosedFlows
from inspector.privileges import Identity, drop, hand_over
from inspector.reaper import end_with_parent
from inspector.spool import SpooledTables
from inspector.streaming import notable_flows
from inspector.timeouts import LIVE_TIMEOUTS, Timeouts
from inspector.watch import Watchlist

POLL = 0.2  # seconds between looks at the processes while the queue is quiet
TICK = 1.0  # seconds: with nothing notable ended, a process still tells the parent's clock this often
FAILED = "capture-process-failed"  # schema.ANOMALY_KINDS


@dataclass
class LiveTotals:
    """What the capture processes counted, for the sensor's closing line."""

    kernel_drops: int | None              # summed; None when a tcpdump did not tell its count
    interface_drops: int | None           # growth of rx_dropped over the run, read by the parent
    per_process_drops: list[int | None]   # each tcpdump's kernel drops
    per_process_packets: list[int | None]  # packets each process read (None: it gave no result)
    unread_at_stop: int | None = None     # summed; None when a tcpdump did not tell its final counters
    tcpdump_messages: list[str] = field(default_factory=list)  # what the tcpdumps said, "process K: ..."
    evidence: list[EvidenceFile] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def failure(self) -> str:
        """Why the capture failed, as ``Sensor.failure`` says it ('' when it did not)."""
        return "; ".join(self.failures)


@dataclass
class _End:
    """A capture process's result, sent to the parent when its pipeline finished."""

    stats: InputStats
    files: dict[str, list[Path]]
    kernel_drops: int | None
    ended_early: str  # why the capture failed (tcpdump ended before the stop, or froze), "" when it did not
    evidence: list[EvidenceFile]
    messages: list[str]  # what tcpdump said besides its counters
    unspooled: dict[str, list] = field(default_factory=dict)  # tables its full spool kept in memory


def _for_parent(closed: ClosedFlows, whole: bool) -> ClosedFlows:
    """What the parent needs of ended flows: the flows with their evidence and
    secrets (all of them for ``--jsonl``, else the notable ones), never the
    windows and byte histograms, which only the final tables use."""
    flows = closed.flows
    uids = flows["uid"] if whole else flows.loc[notable_flows(closed), "uid"]

    def rows(name: str):
        table = getattr(closed, name)
        if name in ("windows", "byte_histograms"):
            return table.iloc[:0]
        return table if whole else table[table["uid"].isin(uids)]

    return replace(closed, **{name: rows(name) for name in ClosedFlows.TABLES})


def _capture_process(index: int, count: int, messages, sensor: Sensor, store: SpooledTables,
                     run: dict, evidence: EvidencePcaps | None, whole_flows: bool, tell_closed: bool) -> None:
    """One capture process (forked: the kernels are compiled already)."""
    # A session of its own, as its tcpdump has: with autogroup scheduling (Linux's default,
    # kernel.sched_autogroup_enabled) a session's processes share one CPU share, so N processes of
    # one session got no more CPU on a busy machine than one. Ctrl-C reaches the parent, which stops them.
    os.setsid()
    end_with_parent()  # SIGTERM when the parent dies: a SIGKILLed sensor leaves no capture running behind it
    asked = threading.Event()  # a stop before run_sensor took the signals over

    def early_stop(_signum=None, _frame=None) -> None:
        asked.set()
        sensor.stop()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, early_stop)
    told = time.monotonic()

    def on_started(_sensor: Sensor) -> None:
        messages.put(("started", index, None))
        if asked.is_set():
            sensor.stop()

    def on_closed(closed: ClosedFlows) -> None:
        nonlocal told
        part = _for_parent(closed, whole_flows)
        # nothing notable: still told now and then, the parent's running events go by the capture clock
        if whole_flows or len(part.flows) or time.monotonic() - told >= TICK:
            told = time.monotonic()
            messages.put(("closed", index, part))

    if evidence is not None:
        evidence.max_total_bytes //= count  # the cap is the sensor's, shared by its processes
    try:
        stats = run_sensor(sensor, store=store, evidence=evidence, on_started=on_started,
                           on_alert=lambda alert: messages.put(("alert", index, alert)),
                           on_stats=lambda stats: messages.put(("stats", index, stats)),
                           on_closed=on_closed if tell_closed else None,
                           on_stall=lambda line: messages.put(("stall", index, line)), **run)
        store.flush()
        messages.put(("done", index, _End(stats[0], store.files, sensor.kernel_drops, sensor.failure,
                                          evidence.written if evidence else [], sensor.errors,
                                          store.parts if store.full else {})))
    except Exception as exc:  # noqa: BLE001 - any failure is told to the parent, which stops the sensor with it
        messages.put(("failed", index, str(exc) or type(exc).__name__))
    finally:
        messages.close()
        messages.join_thread()


def _summed(rounds: list[LiveStats], interface_drops: int | None) -> LiveStats:
    drops = [s.kernel_drops for s in rounds]
    return LiveStats(rfc3339(), max(s.elapsed_s for s in rounds), sum(s.packets for s in rounds),
                     sum(s.flows for s in rounds), None if None in drops else sum(drops), interface_drops)


def _sum_known(counts: list[int | None]) -> int | None:
    """The sum, unknown when one is unknown."""
    return None if None in counts else sum(counts)  # type: ignore[arg-type]


def _merged(name: str, parts: list[InputStats], interface_drops: int | None, failures: list[str],
            reason: str, processes: int) -> InputStats:
    """One live input from the processes' (disjoint) packets; interface drops counted once, kernel drops and
    unread packets summed (unknown when a process's are, or it gave no result); a failed process fails the
    capture (its ``capture-process-failed`` anomaly says why)."""
    whole = len(parts) == processes
    merged = InputStats(name, format=next((p.format for p in parts if p.format), ""),
                        dropped_kernel=_sum_known([p.dropped_kernel for p in parts]) if whole else None,
                        dropped_interface=interface_drops,
                        unread_at_stop=_sum_known([p.unread_at_stop for p in parts]) if whole else None,
                        end="capture-failed" if failures or any(p.end == "capture-failed" for p in parts)
                        else reason)
    anomalies: Counter[str] = Counter()
    for part in parts:
        merged.linktypes |= part.linktypes
        for counter in ("packets", "captured_bytes", "wire_bytes", "truncated_packets", "non_ip_packets"):
            setattr(merged, counter, getattr(merged, counter) + getattr(part, counter))
        anomalies.update({k: v for k, v in part.anomalies.items() if k not in ("interface-drops", "capture-failed")})
        for kind, detail in part.anomaly_details.items():
            merged.anomaly_details.setdefault(kind, detail)
    merged.anomalies = anomalies
    merged.anomaly_details.pop("interface-drops", None)
    merged.anomaly_details.pop("capture-failed", None)  # told with the process's number as capture-process-failed
    if interface_drops:
        merged.anomaly("interface-drops", interface_drops_detail(name.removeprefix("live:")), interface_drops)
    for failure in failures:
        merged.anomaly(FAILED, failure)
    return merged


def run_live_workers(iface: str, workers: int, *, watch: Watchlist, expression: str | None = None,
                     snaplen: int = SNAPLEN, buffer_mb: int = BUFFER_MB, duration: float | None = None,
                     on_alert: Callable[[Alert], None] | None = None,
                     on_started: Callable[[list[str]], None] | None = None, secrets: bool = True,
                     stats_interval: float | None = None, on_stats: Callable[[LiveStats], None] | None = None,
                     on_failure: Callable[[str], None] | None = None, evidence: EvidencePcaps | None = None,
                     timeouts: Timeouts = LIVE_TIMEOUTS, on_closed: Callable[[ClosedFlows], None] | None = None,
                     whole_flows: bool = True, on_stall: Callable[[str], None] | None = None,
                     spool: str | os.PathLike | None = None, spool_resume: bool = False,
                     identity: Identity | None = None) -> tuple[Analysis, LiveTotals]:
    """``run_live`` on ``workers`` capture processes, each taking one hash
    partition of the packets; the same ``Analysis`` at the end.

    ``on_started`` gets the processes' filters once all capture;
    ``on_closed`` hears ended flows (all rows when ``whole_flows``, else
    only the notable ones); ``on_failure`` a line when a process fails
    after the start (the sensor then stops; the line is also an anomaly of
    the input). A process failing to start raises ``LiveError``."""
    expression = expression or capture_filter(watch)
    tcpdump = Sensor(iface, expression, snaplen, buffer_mb).check()
    filters = [partitioned(expression, k, workers, link_header_bytes(tcpdump, ["-i", iface]))
               for k in range(workers)]
    check_filter(tcpdump, iface, filters[-1], snaplen)
    store = SpooledTables(spool, resume=spool_resume)  # an earlier run's spool is refused before the warm-up
    try:
        warm_up(watch, secrets)
        result = _run(iface, filters, store, watch=watch, snaplen=snaplen, buffer_mb=buffer_mb, duration=duration,
                      on_alert=on_alert, on_started=on_started, on_stats=on_stats, on_failure=on_failure,
                      on_closed=on_closed, on_stall=on_stall, evidence=evidence, whole_flows=whole_flows,
                      run={"watch": watch, "secrets": secrets, "stats_interval": stats_interval,
                           "timeouts": timeouts, "identity": identity})
        store.mark_complete()
        return result
    finally:
        store.close()


def _run(iface: str, filters: list[str], store: SpooledTables, *, watch: Watchlist, snaplen: int, buffer_mb: int,
         duration: float | None, on_alert, on_started, on_stats, on_failure, on_closed, on_stall, evidence,
         whole_flows: bool,
         run: dict) -> tuple[Analysis, LiveTotals]:
    context = multiprocessing.get_context("fork")  # the children keep the compiled kernels
    messages = context.Queue()
    stores = [SpooledTables(store.folder / f"process-{k}") for k in range(len(filters))]
    processes = [context.Process(target=_capture_process, name=f"inspector-capture-{k}",
                                 args=(k, len(filters), messages, Sensor(iface, f, snaplen, buffer_mb), stores[k],
                                       run, evidence, whole_flows, on_closed is not None))
                 for k, f in enumerate(filters)]
    rx_start = rx_dropped(iface)
    stopping = threading.Event()
    previous = {}

    def stop(_signum=None, _frame=None) -> None:
        stopping.set()
        for process in processes:
            if process.pid is not None and process.exitcode is None:
                try:
                    os.kill(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def interface_drops() -> int | None:
        now = rx_dropped(iface)
        return max(0, now - rx_start) if now is not None and rx_start is not None else None

    started: set[int] = set()
    ends: dict[int, _End] = {}
    failures: list[str] = []
    failed: set[int] = set()
    rounds: dict[int, dict[int, LiveStats]] = {}
    told_round = Counter()
    reason = ["stopped"]  # or duration, when the timer stopped the sensor

    def times_up() -> None:
        reason[0] = "duration"
        stop()

    timer = threading.Timer(duration, times_up) if duration else None

    def fail(index: int, why: str) -> None:
        line = f"capture process {index + 1} of {len(filters)}: {why}"
        failures.append(line)
        failed.add(index)
        if started == set(range(len(filters))) and on_failure:
            on_failure(line)
        stop()

    def handle(kind: str, index: int, body) -> None:
        if kind == "started":
            started.add(index)
            if started == set(range(len(filters))):
                # every capture process dropped already; the parent, which reads what they send, follows
                hand_over(run["identity"], store.folder)
                drop(run["identity"])
                if stopping.is_set():
                    stop()  # a stop that came while they started
                elif timer:
                    timer.daemon = True
                    timer.start()
                if on_started:
                    on_started(filters)
        elif kind == "alert" and on_alert:
            on_alert(body)
        elif kind == "closed" and on_closed:
            on_closed(body)
        elif kind == "stall" and on_stall:
            on_stall(f"capture process {index + 1} of {len(filters)}: {body}")
        elif kind == "stats":
            number = told_round[index]
            told_round[index] += 1
            rounds.setdefault(number, {})[index] = body
            running = {k for k in range(len(filters)) if k not in ends and k not in failed}
            if on_stats and running <= rounds[number].keys():
                on_stats(_summed(list(rounds.pop(number).values()), interface_drops()))
        elif kind == "done":
            ends[index] = body
            if body.ended_early:
                fail(index, body.ended_early)
        elif kind == "failed":
            fail(index, body)

    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, stop)
        for process in processes:
            process.start()
        reported: set[int] = set()
        while len(reported) < len(processes):
            try:
                handle(*messages.get(timeout=POLL))
                continue
            except queue.Empty:
                pass
            exited = [k for k, p in enumerate(processes) if k not in reported and p.exitcode is not None]
            if exited:
                _drain(messages, handle)  # what they sent before exiting
            for index in exited:
                reported.add(index)
                if index not in ends and index not in failed:
                    fail(index, f"exited (status {processes[index].exitcode}) without its result: "
                                "its flows are missing")
        for process in processes:
            process.join()
    finally:
        if timer:
            timer.cancel()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        stop()
        for process in processes:
            if process.pid is not None:
                process.join(30)
    if started != set(range(len(filters))) and failures:
        raise LiveError(failures[0])
    drops = interface_drops()
    parts = store.earlier_tables()  # a resumed run's, or none
    for index in sorted(ends):
        stores[index].files = ends[index].files
        if ends[index].unspooled:  # its spool's disk was full (told by the process): the rest comes from memory
            stores[index].parts, stores[index].full = ends[index].unspooled, True
        for name, tables in stores[index].tables().items():
            parts[name] += tables
    stats = _merged(f"live:{iface}", [ends[k].stats for k in sorted(ends)], drops, failures, reason[0],
                    len(filters))
    if store.resumed:
        stats.anomaly("spool-resumed", store.resumed)
    kernel = [ends[k].kernel_drops if k in ends else None for k in range(len(filters))]
    packets = [ends[k].stats.packets if k in ends else None for k in range(len(filters))]
    said = [f"process {k + 1}: {line}" for k in sorted(ends) for line in ends[k].messages]
    totals = LiveTotals(stats.dropped_kernel, drops, kernel, packets, unread_at_stop=stats.unread_at_stop,
                        tcpdump_messages=said, evidence=[e for k in sorted(ends) for e in ends[k].evidence],
                        failures=failures)
    return assemble(parts, [stats], watch), totals


def _drain(messages, handle: Callable[..., None]) -> None:
    """Handle every message already in the queue."""
    while True:
        try:
            handle(*messages.get(timeout=POLL))
        except queue.Empty:
            return
