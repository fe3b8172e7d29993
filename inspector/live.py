"""The live sensor: tcpdump captures, the compiled reader decodes its pipe.

``tcpdump -i IFACE -s SNAPLEN -B KIB -U -w - FILTER`` reads packets through
libpcap (with its kernel ring buffer and BPF filter) and writes a pcap
stream to a pipe; ``CaptureReader(live=True)`` decodes what arrived, batch
by batch, into the same pipeline as ``analyze`` (``analyze_readers``). No
Python code runs per packet. Flows end on timeouts as they do there
(``LIVE_TIMEOUTS``), are classified as they end and wait in a spool folder
(``SpooledTables``) for the final reports.

Stopping (``Sensor.stop``: the duration, SIGINT or SIGTERM) first drains
what the kernel still holds: tcpdump is asked for its counters (SIGUSR1)
until it has captured what its filter had received at the stop, less its
drops, for at most ``DRAIN_S`` seconds; then it gets SIGINT, flushes,
prints its final counters and closes the pipe (a frozen one is killed
``KILL_AFTER_S`` later); the reader reads the pipe to its end, then every
flow still open ends and the reports are built from all of them.

Every packet is accounted for in the live input's row of ``inputs``
(``inputs.file`` is ``live:IFACE``): packets that reached the interface and
match the filter = ``packets`` (analysed) + ``dropped_kernel`` (tcpdump's
"dropped by kernel": the capture buffer had no room) + ``dropped_interface``
(growth of ``/sys/class/net/IFACE/statistics/rx_dropped``: dropped before
any capture saw them) + ``unread_at_stop`` (still in the buffer when tcpdump
ended); unknown counts are null. ``end`` says how it ended: stopped,
duration, or capture-failed (tcpdump killed, frozen, its interface gone),
with a ``capture-failed`` anomaly saying why. While it runs, every
``stats_interval`` seconds, ``LiveStats`` tells the counts so far, and a
watchdog (``watch_capture``) says when the capture stops delivering.
"""

from __future__ import annotations

import fcntl
import io
import os
import re
import shutil
import signal
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from inspector.alerts import Alert, Alerter, EvidencePcaps, rfc3339
from inspector.analysis import Analysis, analyze_readers, assemble
from inspector.capture.constants import BUFFER_MB, SNAPLEN
from inspector.capture.reader import CaptureReader, InputStats
from inspector.capture.writer import pcap_header
from inspector.errors import InspectorError
from inspector.meters import Meter, default_meters
from inspector.pipeline import ClosedFlows, ClosedTables, Pipeline
from inspector.privileges import Identity, drop, hand_over
from inspector.reaper import kill_on_death
from inspector.spool import SpooledTables
from inspector.timeouts import LIVE_TIMEOUTS, Timeouts
from inspector.watch import Watchlist, port_ranges

SYS_NET = Path("/sys/class/net")
_F_SETPIPE_SZ = 1031  # fcntl.h, Linux
PIPE_BYTES = 1 << 20  # the default pipe-max-size: 16x the default pipe, fewer wake-ups under load
DRAIN_S = 5.0  # at the stop, at most this long to read what the kernel still holds
KILL_AFTER_S = 3.0  # then SIGINT; a tcpdump not ended this long after it is killed (frozen)
ANSWER_S = 3.0  # tcpdump answering SIGUSR1 later than this is frozen (watchdog)
STALL_S = 5.0  # the watchdog asks tcpdump after this long without a packet
GRANT = ("run it as root (sudo inspector live ...), or give tcpdump the capabilities: "
         "sudo setcap cap_net_raw,cap_net_admin=eip $(command -v tcpdump)")


class LiveError(InspectorError):
    """The capture cannot start: no tcpdump, no such interface, no privilege, bad filter."""


def _port_terms(ports: frozenset[int]) -> list[str]:
    """BPF terms for a port set: 'tcp port 22', 'tcp portrange 49152-49261'."""
    return [f"tcp portrange {r}" if "-" in r else f"tcp port {r}" for r in port_ranges(ports)]


def capture_filter(watch: Watchlist) -> str:
    """The BPF expression of the watchlist: its TCP ports (migration, libvirtd,
    SSH) and its internal networks, e.g. ``tcp portrange 49152-49261 or tcp
    port 16509 or ... or net 192.168.24.0/24``."""
    terms = _port_terms(watch.service_ports) + [f"net {net}" for net in watch.internal_nets]
    return " or ".join(terms) or "ip or ip6"


def interfaces() -> list[str]:
    try:
        return sorted(p.name for p in SYS_NET.iterdir())
    except OSError:
        return []


def check_interface(iface: str) -> None:
    if not iface or "/" in iface or not (SYS_NET / iface).exists():
        raise LiveError(f"-i {iface}: no such network interface; existing: {', '.join(interfaces()) or 'none'}")


def _tcpdump() -> str:
    path = shutil.which("tcpdump")
    if path is None:
        raise LiveError("tcpdump is not installed; inspector live captures through it "
                        "(apt-get install tcpdump, dnf install tcpdump)")
    return path


def _has_capture_caps(path: str) -> bool:
    """tcpdump carries file capabilities (setcap); which ones is left to tcpdump to prove."""
    try:
        return bool(os.getxattr(os.path.realpath(path), "security.capability"))
    except OSError:
        return False


def check_privilege(tcpdump: str) -> None:
    if os.geteuid() != 0 and not _has_capture_caps(tcpdump):
        raise LiveError(f"capturing needs root, or CAP_NET_RAW and CAP_NET_ADMIN on tcpdump: {GRANT}")


def check_filter(tcpdump: str, iface: str, expression: str, snaplen: int) -> None:
    """Compile the filter for the interface (``tcpdump -d``) before starting."""
    done = subprocess.run([tcpdump, "-d", "-i", iface, "-s", str(snaplen), "--", expression],
                          capture_output=True, text=True, check=False, timeout=30)
    if done.returncode == 0:
        return
    message = " ".join(line.removeprefix("tcpdump: ").strip() for line in done.stderr.splitlines() if line.strip())
    if "permission" in message.lower() or "not permitted" in message.lower():
        raise LiveError(f"tcpdump may not capture on {iface} ({message}): {GRANT}")
    if "filter" in message.lower() or "syntax" in message.lower():
        raise LiveError(f"--filter {expression!r}: {message}")
    raise LiveError(f"tcpdump -i {iface}: {message or f'exit status {done.returncode}'}")


def rx_dropped(iface: str) -> int | None:
    try:
        return int((SYS_NET / iface / "statistics" / "rx_dropped").read_text())
    except (OSError, ValueError):
        return None


def interface_drops_detail(iface: str) -> str:
    return f"rx_dropped of {iface} grew during the capture (dropped by the NIC or driver, possibly not ours)"


@dataclass(frozen=True)
class LiveStats:
    """What the sensor has seen so far; ``record()`` is its JSONL object.
    Unknown counts are ``None`` (tcpdump did not answer, no ``rx_dropped``)."""

    ts: str                       # RFC 3339 UTC
    elapsed_s: float              # since the capture started
    packets: int                  # read from tcpdump's pipe so far
    flows: int                    # flows seen so far
    kernel_drops: int | None      # tcpdump's "packets dropped by kernel" so far
    interface_drops: int | None   # growth of rx_dropped of the interface so far

    def record(self) -> dict[str, object]:
        return {"type": "stats", **asdict(self)}

    def line(self) -> str:
        def known(n: int | None) -> str:
            return "unknown" if n is None else f"{n:,}"

        return (f"stats {self.ts} +{self.elapsed_s:.0f}s: {self.packets:,} packets, {self.flows:,} flows, "
                f"kernel drops {known(self.kernel_drops)}, interface drops {known(self.interface_drops)}")


@dataclass(frozen=True)
class TcpdumpCounters:
    """tcpdump's counters (libpcap's ``pcap_stats``). On Linux (TPACKET_V3)
    ``received`` includes the packets ``dropped_kernel`` counts: received =
    captured + dropped by kernel + still in the ring buffer (seen by
    experiment: 100,000 sent into a 1 MiB buffer read slowly, then SIGINT:
    49 captured, 100,000 received, 99,072 dropped, 879 left in the ring)."""

    captured: int                   # handed to tcpdump and written to the pipe
    received: int                   # accepted by the filter
    dropped_kernel: int             # no room in the capture buffer
    dropped_interface: int | None   # libpcap's rx_missed + rx_fifo errors; printed only when not 0


_COUNTER = re.compile(r"(\d+) packets? (captured|received by filter|dropped by kernel|dropped by interface)")
_NAMES = {"captured": "captured", "received by filter": "received", "dropped by kernel": "dropped_kernel",
          "dropped by interface": "dropped_interface"}


class Unwrapped:
    """tcpdump prints its counters as 32-bit unsigned ints, which wrap after
    2^32 packets (71 minutes at 1 M packets/s): each counter seen lower than
    before has wrapped once more. Exact as long as tcpdump is asked (stats,
    watchdog) at least once a wrap."""

    WRAP = 1 << 32

    def __init__(self) -> None:
        self._last: dict[str, int] = {}
        self._wraps: dict[str, int] = {}

    def __call__(self, found: dict[str, int]) -> dict[str, int]:
        for name, raw in found.items():
            if raw < self._last.get(name, 0):
                self._wraps[name] = self._wraps.get(name, 0) + 1
            self._last[name] = raw
        return {name: raw + self._wraps.get(name, 0) * self.WRAP for name, raw in found.items()}


def _counters(found: dict[str, int]) -> TcpdumpCounters | None:
    if not {"captured", "received", "dropped_kernel"} <= found.keys():
        return None
    return TcpdumpCounters(found["captured"], found["received"], found["dropped_kernel"],
                           found.get("dropped_interface"))


def _process_state(pid: int) -> str:
    """The state letter of /proc/PID/stat (T: stopped, e.g. by SIGSTOP); '' when unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def _exit_text(status: int | None) -> str:
    if status is None:
        return "still running"
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"


class Sensor:
    """One tcpdump capture on ``iface``; iterate ``reader`` for its batches.

    ``stop`` drains what the kernel still holds (up to ``drain_s`` seconds:
    until tcpdump has captured what its filter had received at the stop,
    less its drops), then sends SIGINT, and SIGKILL after ``kill_after_s``
    more (a frozen tcpdump). ``close`` (once the pipe is read to its end)
    fills the input's accounting: ``end``, ``dropped_kernel``,
    ``dropped_interface`` and ``unread_at_stop``; unknown stays ``None``.

    Example::

        with Sensor("eth1", "tcp portrange 49152-49261") as sensor:
            for batch in sensor.reader:
                ...
    """

    def __init__(self, iface: str, expression: str, snaplen: int = SNAPLEN, buffer_mb: int = BUFFER_MB,
                 drain_s: float = DRAIN_S, kill_after_s: float = KILL_AFTER_S) -> None:
        self.iface = iface
        self.expression = expression
        self.snaplen = snaplen
        self.buffer_mb = buffer_mb
        self.drain_s = drain_s
        self.kill_after_s = kill_after_s
        self.kernel_drops: int | None = None  # so far; at the end tcpdump's final count, None when unknown
        self.interface_drops: int | None = None
        self.unread_at_stop: int | None = None
        self.errors: list[str] = []  # what tcpdump said besides its counters, as it said it
        self.counters: TcpdumpCounters | None = None  # the latest answer to SIGUSR1
        self.final: TcpdumpCounters | None = None  # what tcpdump printed as it ended
        self.end = ""  # schema.CAPTURE_ENDS, once closed
        self.failure = ""  # why the capture failed (end == capture-failed)
        self.stalls = 0  # times the watchdog found the capture stalled
        self._proc: subprocess.Popen | None = None
        self._stderr: threading.Thread | None = None
        self._drainer: threading.Thread | None = None
        self._draining = threading.Lock()  # taken by the first stop() after the start
        self._rx_start: int | None = None
        self._listening = threading.Event()
        self._counted = threading.Event()  # tcpdump answered SIGUSR1
        self._asking = threading.Lock()  # one SIGUSR1 question at a time (stats, watchdog, drain)
        self._killed = False  # tcpdump did not end on SIGINT and was killed
        self.started = 0.0  # time.monotonic() at start
        self.flows = 0  # flows so far, kept up to date by run_live
        self.exit_status: int | None = None  # tcpdump's, once closed
        self.stopped = False  # stop() was called: a capture that ended without it ended on its own
        self.reason = "stopped"  # why stop() was called: stopped (a signal) or duration
        self.reader: CaptureReader
        self.user: str | None = None  # tcpdump -Z: the user the sensor drops to, so it can still signal tcpdump

    def check(self) -> str:
        """Fail with one line on what would stop tcpdump; returns its path."""
        tcpdump = _tcpdump()
        check_interface(self.iface)
        check_privilege(tcpdump)
        check_filter(tcpdump, self.iface, self.expression, self.snaplen)
        return tcpdump

    def start(self, timeout: float = 10.0) -> None:
        tcpdump = self.check()
        self._rx_start = rx_dropped(self.iface)
        # Own process group: a Ctrl-C at the terminal reaches inspector, which stops tcpdump itself.
        self._proc = subprocess.Popen(
            [tcpdump, "-i", self.iface, "-s", str(self.snaplen), "-B", str(self.buffer_mb * 1024), "-U", "-n",
             "-w", "-", *(["-Z", self.user] if self.user else []),
             "--", self.expression],  # '--': a filter is never read as an option (-Z root)
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, bufsize=0,
            start_new_session=True)
        # Not PR_SET_PDEATHSIG: tcpdump's change of user (-Z, or Debian's default 'tcpdump') clears it.
        kill_on_death(self._proc.pid)  # a SIGKILLed sensor leaves no tcpdump behind
        try:
            fcntl.fcntl(self._proc.stdout.fileno(), _F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:
            pass  # a smaller pipe only means more, smaller reads
        self._stderr = threading.Thread(target=self._read_stderr, name="tcpdump-stderr", daemon=True)
        self._stderr.start()
        if not self._listening.wait(timeout) or self._proc.poll() is not None:
            self._proc.kill()
            self._proc.wait()
            self._stderr.join(5)
            raise LiveError(f"tcpdump did not start on {self.iface}: {'; '.join(self.errors) or 'no output'}")
        self.started = time.monotonic()
        self.reader = CaptureReader(f"live:{self.iface}", stream=self._proc.stdout, live=True)

    def _read_stderr(self) -> None:
        """tcpdump's stderr: its SIGUSR1 answers (one line), its final counters
        (one a line, after "N packets captured"), and anything else it says."""
        assert self._proc is not None and self._proc.stderr is not None
        final: dict[str, int] | None = None
        unwrapped = Unwrapped()
        for raw in self._proc.stderr:
            line = raw.decode("utf-8", "replace").strip().removeprefix("tcpdump: ")
            found = unwrapped({_NAMES[name]: int(n) for n, name in _COUNTER.findall(line)})
            if "listening on" in line:
                self._listening.set()
            elif len(found) >= 3:  # SIGUSR1: "N packets captured, N packets received by filter, ..."
                self.counters = _counters(found)
                self.kernel_drops = found["dropped_kernel"]
                self._counted.set()
            elif found and "captured" in found:  # the end: one counter a line
                final = found
            elif found and final is not None:
                final.update(found)
            elif line:
                self.errors.append(line)
        if final is not None:
            self.final = _counters(final)
        self._listening.set()  # tcpdump ended: nobody waits any more

    def ask(self, timeout: float) -> TcpdumpCounters | None:
        """tcpdump's counters now (SIGUSR1; SIGINFO on the BSDs), None when
        it does not answer within ``timeout`` or is not running. tcpdump
        answers once the packet it is writing is in the pipe."""
        with self._asking:
            if self._proc is None or self._proc.poll() is not None:
                return None
            self._counted.clear()
            try:
                os.kill(self._proc.pid, getattr(signal, "SIGINFO", signal.SIGUSR1))
            except ProcessLookupError:
                return None
            return self.counters if self._counted.wait(timeout) else None

    def poll(self, timeout: float = 2.0) -> LiveStats:
        """The counts so far: asks tcpdump for its counters (SIGUSR1) and
        waits up to ``timeout`` for them; reads ``rx_dropped`` again."""
        self.ask(timeout)
        now = rx_dropped(self.iface)
        interface = max(0, now - self._rx_start) if now is not None and self._rx_start is not None else None
        return LiveStats(rfc3339(), time.monotonic() - self.started, self.reader.stats.packets, self.flows,
                         self.kernel_drops, interface)

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def frozen(self) -> bool:
        """tcpdump is alive but does not answer SIGUSR1 within a few seconds."""
        return self.running() and self.ask(ANSWER_S) is None and self.running()

    def state(self) -> str:
        """'stopped (SIGSTOP?)' when the kernel says tcpdump is stopped, else ''."""
        return "stopped (SIGSTOP?)" if self._proc is not None and _process_state(self._proc.pid) in ("T", "t") \
            else ""

    def stop(self, reason: str = "stopped") -> None:
        """Stop the capture (idempotent, safe from a signal handler): a thread
        drains the kernel's buffer, then ends tcpdump. ``reason``: stopped or duration."""
        if not self.stopped:
            self.stopped, self.reason = True, reason
        if self._proc is not None and self._draining.acquire(blocking=False):  # never blocks: a handler may call it
            self._drainer = threading.Thread(target=self._drain_and_end, name="tcpdump-drain", daemon=True)
            self._drainer.start()

    def _drain_and_end(self) -> None:
        """Wait (up to ``drain_s``) until tcpdump has captured every packet its
        filter had received when the stop came, less those the kernel dropped;
        then SIGINT, and SIGKILL after ``kill_after_s`` more."""
        deadline = time.monotonic() + self.drain_s
        target = None
        while self.running() and (left := deadline - time.monotonic()) > 0:
            counters = self.ask(min(left, 1.0))
            if counters is None:
                continue
            if target is None:
                target = counters.received - counters.dropped_kernel
            if counters.captured >= target:
                break
            time.sleep(0.05)
        self._end_tcpdump()

    def _end_tcpdump(self) -> None:
        assert self._proc is not None
        if self._proc.poll() is not None:
            return
        try:
            os.kill(self._proc.pid, signal.SIGINT)
            self._proc.wait(self.kill_after_s)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            self._killed = True
            self._proc.kill()

    def close(self) -> None:
        """After the pipe is read to its end: reap tcpdump, fill the accounting."""
        if self._proc is None or self._proc.stdout.closed:
            return
        if self._proc.poll() is None:  # the pipeline ended without a stop (an error): end tcpdump now
            self.stopped = True
            self._end_tcpdump()
        if self._drainer is not None:
            self._drainer.join()
        self._proc.wait()
        if self._stderr is not None:
            self._stderr.join(5)
        self.exit_status = self._proc.returncode
        self._proc.stdout.close()
        self._proc.stderr.close()
        end = rx_dropped(self.iface)
        if end is not None and self._rx_start is not None:
            self.interface_drops = max(0, end - self._rx_start)
        self._account(self.reader.stats)

    def _account(self, stats: InputStats) -> None:
        """The input's counters and end, from tcpdump's final counters (unknown when it printed none)."""
        final = self.final
        self.kernel_drops = final.dropped_kernel if final else None
        unread = final.received - final.dropped_kernel - stats.packets if final else None
        # below 0 the counters disagree (a wrap of tcpdump's 32-bit counters not seen): unknown
        self.unread_at_stop = unread if unread is not None and unread >= 0 else None
        said = "; ".join(self.errors)
        if self._killed:
            self.failure = (f"tcpdump did not end within {self.kill_after_s:g} s of SIGINT at the stop and was "
                            f"killed (frozen?); its counters are unknown{': ' + said if said else ''}")
        elif not self.stopped or self.exit_status != 0 or final is None:
            self.failure = (f"tcpdump ended before the sensor was stopped ({_exit_text(self.exit_status)}): "
                            f"{said or 'no message'}")
        self.end = "capture-failed" if self.failure else self.reason
        stats.end = self.end
        stats.dropped_kernel = self.kernel_drops
        stats.dropped_interface = self.interface_drops
        stats.unread_at_stop = self.unread_at_stop
        if self.failure:
            stats.anomaly("capture-failed", self.failure)
        if self.stalls:
            stats.anomaly("capture-stalled", "the capture delivered nothing and tcpdump did not answer for its "
                          f"counters within {ANSWER_S:g} s", self.stalls)
        if self.kernel_drops:
            stats.anomaly("kernel-drops", "packets dropped by the kernel capture buffer (tcpdump's count): "
                          "the analysis misses them", self.kernel_drops)
        if self.interface_drops:
            stats.anomaly("interface-drops", interface_drops_detail(self.iface), self.interface_drops)
        if self.unread_at_stop:
            stats.anomaly("unread-at-stop", "packets still in the kernel capture buffer when tcpdump stopped "
                          f"(the drain at the stop is bounded at {self.drain_s:g} s): the analysis misses them",
                          self.unread_at_stop)

    def __enter__(self) -> Sensor:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._proc is not None and not self.stopped:
            self.stop()
        self.close()


def _warm_up_capture() -> bytes:
    """A pcap of one TCP connection to a migration port carrying a QEVM header."""
    def frame(sport: int, dport: int, seq: int, flags: int, payload: bytes) -> bytes:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
        tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0)
        return b"\0" * 12 + b"\x08\x00" + ip + tcp + payload

    stream = b"QEVM\x00\x00\x00\x03" + bytes(range(256)) * 64
    frames = [frame(40000, 49152, 0, 0x02, b""), frame(49152, 40000, 0, 0x12, b"")]
    frames += [frame(40000, 49152, 1 + at, 0x18, stream[at:at + 1448]) for at in range(0, len(stream), 1448)]
    records = b"".join(struct.pack("<IIII", 1, i, len(f), len(f)) + f for i, f in enumerate(frames))
    return pcap_header(1, SNAPLEN) + records


def warm_up(watch: Watchlist, secrets: bool) -> Analysis:
    """Run the whole pipeline once on a tiny capture before tcpdump starts:
    numba compiles the kernels on first use (seconds with a cold cache),
    and the first flows to end load pyarrow (the spool), the JSON Lines
    writer, events and findings; a sensor doing that while tcpdump's buffer
    fills would drop packets."""
    from inspector.streaming import JsonLines, RecentHappenings

    reader = CaptureReader("warm-up", stream=io.BytesIO(_warm_up_capture()))
    lines = JsonLines(io.StringIO())
    happenings = RecentHappenings(watch, lambda records: None)

    def closed(part: ClosedFlows) -> None:
        lines.flows(part)
        happenings.add(part)

    with SpooledTables() as spool:  # the flow's end also looks at the recent flows (its first add)
        result = analyze_readers([reader], watch=watch, names=["warm-up"], meters=sensor_meters(secrets, lambda _alert: None),
                                 on_closed=closed, store=spool)
    lines.final(result)
    return result


def sensor_meters(secrets: bool, on_alert: Callable[[Alert], None],
                  evidence: EvidencePcaps | None = None) -> list[Meter]:
    """``analyze``'s meters, with early alerts and the evidence pcaps of alerted flows."""
    alerter = Alerter(on_alert, evidence.keep if evidence else None)
    meters = default_meters(secrets=secrets, on_detect=alerter.on_detect, on_secret=alerter.on_secret)
    return meters + [alerter] + ([evidence] if evidence else [])


def run_live(iface: str, *, watch: Watchlist, expression: str | None = None, snaplen: int = SNAPLEN,
             buffer_mb: int = BUFFER_MB,
             duration: float | None = None, on_alert: Callable[[Alert], None] | None = None,
             on_started: Callable[[Sensor], None] | None = None, secrets: bool = True,
             stats_interval: float | None = None, on_stats: Callable[[LiveStats], None] | None = None,
             evidence: EvidencePcaps | None = None, timeouts: Timeouts = LIVE_TIMEOUTS,
             on_closed: Callable[[ClosedFlows], None] | None = None,
             on_stall: Callable[[str], None] | None = None,
             spool: str | os.PathLike | None = None, spool_resume: bool = False,
             identity: Identity | None = None) -> tuple[Analysis, Sensor]:
    """Capture on ``iface`` until ``duration`` seconds pass or SIGINT/SIGTERM,
    then finish every flow: the same ``Analysis`` as ``analyze`` of a file.

    Flows end as they time out (``timeouts``, on the packets' clock, which
    a quiet link advances to the wall clock) and ``on_closed`` hears their
    tables at once; their tables wait in a spool folder (``spool``, or a
    temporary one) until the end, so memory follows the open flows.
    ``on_stats`` gets a ``LiveStats`` every ``stats_interval`` seconds (from
    a thread of its own); ``evidence`` keeps the packets of alerted flows
    (closed here, its ``written`` files then list what was written);
    ``on_stall`` a line when the capture stops delivering (the watchdog).
    ``spool_resume`` adds the ended flows of an earlier run in ``spool``;
    ``identity``: the user packets are parsed as (``privileges``).
    ``inspector.live_workers.run_live_workers`` is the same on N processes."""
    sensor = Sensor(iface, expression or capture_filter(watch), snaplen, buffer_mb)
    sensor.check()  # a wrong interface, privilege or filter is told at once, not after the warm-up
    store = SpooledTables(spool, resume=spool_resume)  # an earlier run's spool is refused before the warm-up
    try:
        warm_up(watch, secrets)
        stats = run_sensor(sensor, watch=watch, store=store, duration=duration, on_alert=on_alert,
                           on_started=on_started, secrets=secrets, stats_interval=stats_interval, on_stats=on_stats,
                           evidence=evidence, timeouts=timeouts, on_closed=on_closed, on_stall=on_stall,
                           identity=identity)
        if store.resumed:
            stats[0].anomaly("spool-resumed", store.resumed)
        return assemble(store.tables(), stats, watch), sensor
    finally:
        store.close()


def watch_capture(sensor: Sensor, ended: threading.Event, on_stall: Callable[[str], None] | None) -> None:
    """The watchdog: when no packet arrived for ``STALL_S`` seconds, ask
    tcpdump for its counters; a tcpdump alive that does not answer within
    ``ANSWER_S`` is stalled (frozen, SIGSTOP): told once a stall, counted as
    an anomaly. A quiet link is not a stall: tcpdump answers."""
    packets, since, stalled = -1, time.monotonic(), False
    while not ended.wait(1.0):
        if sensor.reader.stats.packets != packets:
            packets, since, stalled = sensor.reader.stats.packets, time.monotonic(), False
        elif not stalled and not sensor.stopped and time.monotonic() - since >= STALL_S:
            if sensor.frozen() and not ended.is_set() and not sensor.stopped:
                stalled = True
                sensor.stalls += 1
                state = sensor.state()
                line = (f"capture on {sensor.iface} stalled: no packet for {time.monotonic() - since:.0f} s and "
                        f"tcpdump{' is ' + state + ' and' if state else ''} did not answer for its counters "
                        f"within {ANSWER_S:g} s")
                if on_stall:
                    on_stall(line)
            else:
                since = time.monotonic()


def run_sensor(sensor: Sensor, *, watch: Watchlist, store: ClosedTables, duration: float | None = None,
               on_alert: Callable[[Alert], None] | None = None, on_started: Callable[[Sensor], None] | None = None,
               secrets: bool = True, stats_interval: float | None = None,
               on_stats: Callable[[LiveStats], None] | None = None, evidence: EvidencePcaps | None = None,
               timeouts: Timeouts = LIVE_TIMEOUTS,
               on_closed: Callable[[ClosedFlows], None] | None = None,
               on_stall: Callable[[str], None] | None = None,
               identity: Identity | None = None) -> list[InputStats]:
    """Start ``sensor`` and run the pipeline over it until it stops
    (``duration``, SIGINT or SIGTERM); the ended flows' tables go to
    ``store``. Returns the input's counts (``assemble`` builds the reports
    from them and the store): ``run_live`` and each capture process of
    ``run_live_workers`` share it. A watchdog tells ``on_stall`` a line
    when the capture stops delivering (``watch_capture``). Once tcpdump
    captures, and before a packet is parsed, the process becomes ``identity``."""
    sensor.user = identity.name if identity else None
    sensor.start()
    try:
        hand_over(identity, getattr(store, "folder", None))
        drop(identity)  # tcpdump holds the capture open: from here on no packet is parsed as root
    except BaseException:
        sensor.close()
        raise
    previous = {}
    ended = threading.Event()

    def stop(_signum=None, _frame=None) -> None:
        sensor.stop("stopped")

    def report_stats() -> None:
        assert on_stats is not None and stats_interval
        while not ended.wait(stats_interval):
            stats = sensor.poll()
            if not ended.is_set():
                on_stats(stats)

    def on_batch(_reader, _packets: int, flows: int) -> None:
        sensor.flows = flows

    def closed(part: ClosedFlows) -> None:
        if not part.interim:
            store.add(part)
        if on_closed:
            on_closed(part)

    timer = threading.Timer(duration, sensor.stop, args=("duration",)) if duration else None
    watchdog = threading.Thread(target=watch_capture, args=(sensor, ended, on_stall), name="live-watchdog",
                                daemon=True)
    reporter = threading.Thread(target=report_stats, name="live-stats", daemon=True) \
        if on_stats and stats_interval else None
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, stop)
        if timer:
            timer.daemon = True
            timer.start()
        if on_started:
            on_started(sensor)
        if reporter:
            reporter.start()
        watchdog.start()

        def readers():
            try:
                yield sensor.reader
            finally:
                ended.set()
                if reporter:
                    reporter.join(5)
                watchdog.join(ANSWER_S + 1)
                sensor.close()  # drained: the drop counters join the input's anomalies

        meters = sensor_meters(secrets, on_alert or (lambda _alert: None), evidence)
        return Pipeline(watch, [f"live:{sensor.iface}"], meters=meters, on_closed=closed,
                        timeouts=timeouts).run(readers(), on_batch=on_batch)
    finally:
        ended.set()
        if timer:
            timer.cancel()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sensor.close()
        if evidence:
            evidence.close()
