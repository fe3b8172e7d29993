"""The ``inspector`` command line: thin commands over the library API."""

from __future__ import annotations

import atexit
import gc
import json
import os
import sys
import threading
import warnings
from dataclasses import replace
from collections.abc import Callable
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from inspector.capture.constants import BUFFER_MB, SNAPLEN
from inspector.errors import InspectorError
from inspector.report.output import EXPORT_FORMATS
from inspector.schema import GROUPINGS, SEVERITIES
from inspector.timeouts import DEFAULT_TIMEOUTS, LIVE_TIMEOUTS, Timeouts

if TYPE_CHECKING:
    from rich.console import Console

    from inspector.privileges import Identity
    from inspector.watch import Watchlist

# Modules that load numpy, pandas, numba or rich are imported inside the
# commands that use them: ``inspector --help`` and ``--version`` stay instant.


class ExitStatus(IntEnum):
    """Exit codes (documented in README.md)."""

    OK = 0
    INTERNAL_ERROR = 1
    BAD_INPUT = 2  # unreadable capture, bad option or watchlist file
    FINDINGS = 3  # --fail-on: a finding at or above the given severity
    CAPTURE_FAILED = 4  # live: tcpdump killed, frozen or its interface gone before the stop; reports incomplete
    OUTPUT_LOST = 5  # an output could not be written whole (a full disk); every other one was


def _fail(message: str, status: ExitStatus = ExitStatus.BAD_INPUT) -> None:
    from inspector.text import inert

    click.echo(f"inspector: error: {inert(message)}", err=True)
    sys.exit(status)


def _watchlist(config: str | None, migration_ports: str | None, libvirtd_ports: str | None,
               ssh_ports: str | None, internal_nets: tuple[str, ...]) -> Watchlist:
    from inspector.watch import Watchlist

    return Watchlist.from_options(watch_config=config, migration_ports=migration_ports,
                                  libvirtd_ports=libvirtd_ports, ssh_ports=ssh_ports, internal_nets=internal_nets)


FAIL_ON = click.option(
    "--fail-on", type=click.Choice(SEVERITIES), metavar="SEVERITY",
    help="Exit with status 3 when a finding at or above SEVERITY exists (critical, high, medium, low, info).")


def _report_options(command):
    """The report files ``analyze`` can write (the sensor shares them)."""
    options = [
        click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write the full result as JSON."),
        click.option("--html", "html_path", type=click.Path(path_type=Path),
                     help="Write a self-contained HTML report (plots inline, no JavaScript)."),
        click.option("--markdown", "markdown_path", type=click.Path(path_type=Path),
                     help="Write a Markdown report."),
        click.option("--csv", "csv_path", type=click.Path(path_type=Path), help="Write the flows table as CSV."),
        click.option("--export", "export_dir", type=click.Path(file_okay=False, path_type=Path),
                     help="Write every table (flows, events, findings, ...) into this folder."),
        click.option("--export-format", type=click.Choice(EXPORT_FORMATS), default="csv", show_default=True,
                     help="File format of --export."),
        click.option("--show-payload", is_flag=True,
                     help="Include payload excerpts (hex and ASCII) of secrets in reports; redacted by default."),
        FAIL_ON,
    ]
    for option in reversed(options):
        command = option(command)
    return command


WATCHLIST_OPTIONS = (
    click.option("--watch-config", type=click.Path(path_type=Path), help="TOML file with a [watch] table."),
    click.option("--migration-ports", metavar="SPEC",
                 help="Migration ports, e.g. 49152-49215 (default 49152-49261)."),
    click.option("--libvirtd-ports", metavar="SPEC", help="libvirtd ports (default 16509,16514)."),
    click.option("--ssh-ports", metavar="SPEC", help="SSH ports (default 22)."),
    click.option("--internal-net", "internal_nets", multiple=True, metavar="CIDR",
                 help="Internal API network; repeat for several."),
)


def _watchlist_options(command):
    """The watchlist options every command that analyses captures takes."""
    for option in reversed(WATCHLIST_OPTIONS):
        command = option(command)
    return command


def _watch_options(command):
    """The watchlist and flow options ``analyze`` and ``live`` share."""
    options = [
        click.option("--all", "show_all", is_flag=True, help="List every flow, not only watched ones."),
        click.option("--limit", default=100, show_default=True, help="Most flows listed in the terminal."),
        *WATCHLIST_OPTIONS,
        click.option("--no-secret-scan", is_flag=True,
                     help="Do not scan cleartext payload for secrets (faster on text-heavy bulk traffic)."),
        click.option("--idle-timeout", type=click.FloatRange(min=0, min_open=True), default=Timeouts.idle,
                     show_default=True, metavar="SECONDS",
                     help="A flow without packets this long has ended; its 5-tuple then starts a new flow."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="inspector")
def main() -> None:
    """Prove from packets whether live-migration and internal API traffic is encrypted."""


@main.command("analyze")
@click.argument("paths", nargs=-1, required=True, type=click.Path(dir_okay=True, path_type=Path))
@_report_options
@_watch_options
@click.option("-w", "--workers", type=click.IntRange(min=1), metavar="N",
              help="Processes to analyse on, each taking a share of the flows (default: every core; "
                   "small captures use fewer).")
@click.option("--scheduler", metavar="ADDRESS",
              help="Run on a Dask distributed cluster, e.g. tcp://10.0.0.5:8786 (its workers must read the "
                   "capture files at the same paths).")
@click.option("--group-by", type=click.Choice(GROUPINGS), default="none", show_default=True,
              help="Files are one capture (none: rotated files of one mirror port), one each (file), or one "
                   "per folder (folder: one sensor's files per folder).")
@click.option("-q", "--quiet", is_flag=True,
              help="No terminal summary and no progress bar (the one-time 'compiling' line still shows).")
@click.option("--config", "config_paths", multiple=True, type=click.Path(path_type=Path), metavar="PATH",
              help="Hosts' configuration folders to audit and check against the capture (see config-audit); "
                   "repeat for several.")
def analyze_command(paths, json_path, html_path, markdown_path, csv_path, export_dir, export_format, show_payload,
                    fail_on, show_all, limit, watch_config, migration_ports, libvirtd_ports, ssh_ports,
                    internal_nets, no_secret_scan, idle_timeout, workers, scheduler, group_by, quiet,
                    config_paths) -> None:
    """Read capture files (or folders of them), classify every flow, report findings.

    Several files are read in order as one capture unless --group-by says otherwise.

    Example: inspector analyze captures/qemu-plain.pcap.gz --html report.html --fail-on high
    """
    with _imports_without_gc():
        from inspector.analysis import analyze
        from inspector.parallel import default_workers
        from inspector.report.progress import progress_bar
        from inspector.report.writers import Reports

    _tell_when_compiling()
    reports = Reports(json_path=json_path, html_path=html_path, markdown_path=markdown_path, csv_path=csv_path,
                      export_dir=export_dir, export_format=export_format, show_payload=show_payload)
    try:
        watch = _watchlist(watch_config, migration_ports, libvirtd_ports, ssh_ports, internal_nets)
        reports.check(paths)
        audit = _config_audit(config_paths) if config_paths else None
        watch = audit.watchlist(watch) if audit else watch
        timeouts = replace(DEFAULT_TIMEOUTS, idle=idle_timeout)
        engine = {"workers": workers or default_workers(), "scheduler": scheduler, "group_by": group_by}
        if quiet and reports.streamable:  # every flow waits on disk: memory for the open and the notable ones
            import pyarrow as pa

            from inspector.spool import ReportSpool

            # the spool's Parquet buffers come and go; mimalloc (pyarrow's default) kept ~40 MB of them resident
            pa.set_memory_pool(pa.system_memory_pool())
            with ReportSpool(excerpts=show_payload) as spool, _input_notices():
                result = analyze(paths, watch=watch, secrets=not no_secret_scan, timeouts=timeouts, store=spool,
                                 **engine)
                _add_config(result, audit)
                lost = _write_reports(lambda: reports.write_streamed(result, spool))
        else:
            with progress_bar(enabled=not quiet) as on_progress, _input_notices():
                result = analyze(paths, watch=watch, on_progress=on_progress, secrets=not no_secret_scan,
                                 timeouts=timeouts, **engine)
            _add_config(result, audit)
            lost = _write_reports(lambda: reports.write(result))
    except InspectorError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted", ExitStatus.INTERNAL_ERROR)
    if not quiet:
        from inspector.report import terminal

        terminal.render(result, _console(), show_all=show_all, limit=limit)
    if lost:
        sys.exit(ExitStatus.OUTPUT_LOST)
    _exit_for_findings(result.findings, fail_on)
    if audit is not None and len(audit.config_problems):
        sys.exit(ExitStatus.BAD_INPUT)


def _write_reports(write) -> list[str]:
    """Run ``write`` (``Reports.write``...); each report it could not write is
    one error line, and the lines are returned: the run ends with OUTPUT_LOST."""
    from inspector.errors import OutputError
    from inspector.text import inert

    try:
        write()
    except OutputError as exc:
        for line in exc.failures:
            click.echo(f"inspector: error: {inert(line)}", err=True)
        return exc.failures
    return []


@contextmanager
def _warnings_to(category: type[Warning], tell: Callable[[str], None]):
    """Warnings of ``category`` (the library's notes) go to ``tell``, sanitised, one line each."""
    from inspector.text import inert

    with warnings.catch_warnings():
        show_others = warnings.showwarning

        def show(message, category_, filename, lineno, file=None, line=None):
            if issubclass(category_, category):
                tell(inert(str(message)))
            else:
                show_others(message, category_, filename, lineno, file, line)

        warnings.showwarning = show
        warnings.simplefilter("always", category)
        yield


def _output_notices(on_failure):
    """Outputs written as the sensor runs that the disk stopped taking
    (``OutputWarning``: --jsonl, --write-pcap, the spool) go to ``on_failure``,
    one line each; in a forked capture process (``live --workers``), whose
    copy of the --jsonl writer is not the one the sensor writes, to stderr only."""
    from inspector.errors import OutputWarning

    owner = os.getpid()

    def tell(line: str) -> None:
        if os.getpid() == owner:
            on_failure(line)
        else:
            click.echo(f"inspector: error: {line}", err=True)

    return _warnings_to(OutputWarning, tell)


def _config_audit(paths):
    """Audit configuration folders; each file that could not be read is one line on stderr."""
    from inspector.config import audit_config

    audit = audit_config(paths)
    for problem in audit.config_problems.itertuples(index=False):
        click.echo(f"inspector: warning: {problem.file}: {problem.problem}", err=True)
    return audit


def _add_config(result, audit) -> None:
    if audit is not None:
        from inspector.config import add_to_analysis

        add_to_analysis(result, audit.with_analysis(result))


@main.command("config-audit")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--capture", "captures", multiple=True, type=click.Path(path_type=Path), metavar="FILE",
              help="Capture to check the configuration against (repeat for several; read as one capture).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write the audit as JSON.")
@click.option("--html", "html_path", type=click.Path(path_type=Path), help="Write a self-contained HTML report.")
@click.option("--markdown", "markdown_path", type=click.Path(path_type=Path), help="Write a Markdown report.")
@FAIL_ON
@click.option("-q", "--quiet", is_flag=True, help="No terminal summary.")
def config_audit_command(paths, captures, json_path, html_path, markdown_path, fail_on, quiet) -> None:
    """Audit hosts' configuration for live-migration security: nova.conf,
    libvirtd.conf, qemu.conf, nova policy, sshd_config and the nova users'
    authorized_keys, firewall rules.

    Each PATH is a host's folder (an /etc tree, a sosreport, a kolla or TripleO
    config folder) or a folder of such folders, one per host; files are found
    by name. With --capture, the configuration is checked against the
    migrations the capture shows. A file that cannot be read is reported and
    the audit goes on (exit status 2 at the end).

    Example: inspector config-audit sos/compute-0 sos/compute-1 --capture mig.pcap --fail-on high
    """
    from inspector.report.output import check_not_input, write_atomically

    try:
        for out in (json_path, html_path, markdown_path):
            if out:
                check_not_input(out, [*paths, *captures])
        audit = _config_audit(paths)
        if captures:
            from inspector.analysis import analyze

            _tell_when_compiling()
            with _input_notices():
                audit = audit.with_analysis(analyze(list(captures), watch=audit.watchlist()))
        from inspector.report import config_report, html
        from inspector.report.writers import write_each

        lost = _write_reports(lambda: write_each([
            ("--json", json_path, lambda path: write_atomically(
                path, lambda h: config_report.write_config_json(audit, h))),
            ("--html", html_path, lambda path: write_atomically(path, lambda h: html.write_config_html(audit, h))),
            ("--markdown", markdown_path, lambda path: write_atomically(
                path, lambda h: config_report.write_config_markdown(audit, h))),
        ]))
    except InspectorError as exc:
        _fail(str(exc))
    if not quiet:
        config_report.render_config(audit, _console())
    if lost:
        sys.exit(ExitStatus.OUTPUT_LOST)
    _exit_for_findings(audit.findings, fail_on)
    if len(audit.config_problems):
        sys.exit(ExitStatus.BAD_INPUT)


@main.command("live")
@click.option("-i", "--interface", "iface", required=True, metavar="IFACE", help="Interface to capture on.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Stop after this many seconds (default: until Ctrl-C or SIGTERM).")
@click.option("--jsonl", "jsonl_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Append, one JSON object a line: alerts as they fire, flows as they end, events and findings "
                   "as they show, stats; at the end the final events and findings.")
@click.option("--active-timeout", type=click.FloatRange(min=0, min_open=True), default=LIVE_TIMEOUTS.active,
              show_default=True, metavar="SECONDS",
              help="Report a flow still open after this long (closed_by=open) and again each further period; "
                   "it goes on as the same flow.")
@click.option("--spool", "spool_dir", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Keep the tables of ended flows here until the final reports (default: a temporary folder, "
                   "removed at the end). A folder holding an earlier run's tables is refused, see --spool-resume.")
@click.option("--spool-resume", is_flag=True,
              help="The --spool folder holds an earlier run's tables (a killed run's): add its ended flows to this "
                   "run's reports (the live input's anomalies then say so).")
@click.option("--user", metavar="NAME",
              help="Parse packets as this user once tcpdump has opened the capture (default: the user behind "
                   "sudo; run as root without sudo, root, said in one line). Outputs must be writable by it.")
@click.option("--group", metavar="NAME", help="With --user: parse packets as this group (default: the user's).")
@click.option("--filter", "bpf", metavar="BPF", help="Capture filter (default: compiled from the watchlist).")
@click.option("--snaplen", type=click.IntRange(64, SNAPLEN), default=SNAPLEN, show_default=True,
              help="Bytes captured of each packet.")
@click.option("--buffer-mb", type=click.IntRange(1, 4096), default=BUFFER_MB, show_default=True, metavar="MB",
              help="Kernel capture buffer (tcpdump -B): room for bursts while the sensor catches up.")
@click.option("--stats-interval", type=click.FloatRange(min=0), default=10, show_default=True, metavar="SECONDS",
              help="Print packets, flows and drop counts so far this often (and to --jsonl); 0: only at the end.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True, metavar="N",
              help="Capture processes: each runs its own tcpdump on one hash partition of the flows (both "
                   "directions of a flow in the same one) and its own pipeline; alerts, stats and reports merged.")
@click.option("--write-pcap", "pcap_dir", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Keep the packets of each alerted flow, from its alert on, as DIR/KIND_ORIG_RESP.pcap.")
@click.option("--write-pcap-max-mb", type=click.FloatRange(min=0, min_open=True), default=8, show_default=True,
              metavar="MB", help="Largest evidence pcap of one flow, in MB (10^6 bytes).")
@click.option("--write-pcap-total-mb", type=click.FloatRange(min=0, min_open=True), default=64, show_default=True,
              metavar="MB", help="Largest total of all evidence pcaps, in MB.")
@_report_options
@_watch_options
@click.option("-q", "--quiet", is_flag=True, help="No terminal summary (alerts still go to stderr).")
def live_command(iface, duration, jsonl_path, active_timeout, spool_dir, spool_resume, user, group, bpf, snaplen,
                 buffer_mb, stats_interval, workers, pcap_dir,
                 write_pcap_max_mb, write_pcap_total_mb, json_path, html_path, markdown_path, csv_path,
                 export_dir, export_format, show_payload, fail_on, show_all, limit, watch_config, migration_ports,
                 libvirtd_ports, ssh_ports, internal_nets, no_secret_scan, idle_timeout, quiet) -> None:
    """Capture on an interface (through tcpdump), alert as soon as a watched
    flow shows cleartext migration, credentials or NBD disk data, tell flows,
    events and findings as flows end; on --duration, Ctrl-C or SIGTERM finish
    every flow and write the reports.

    Example: sudo inspector live -i eth1 --duration 600 --jsonl alerts.jsonl --write-pcap evidence/ --html report.html
    """
    from inspector.alerts import MB, EvidencePcaps, rfc3339
    from inspector.live import capture_filter, run_live
    from inspector.privileges import hand_over
    from inspector.report import terminal
    from inspector.report.writers import Reports
    from inspector.streaming import JsonLines, RecentHappenings
    from inspector.text import inert

    _tell_when_compiling()
    reports = Reports(json_path=json_path, html_path=html_path, markdown_path=markdown_path, csv_path=csv_path,
                      export_dir=export_dir, export_format=export_format, show_payload=show_payload)
    jsonl = evidence = None
    failures: list[str] = []
    lost: list[str] = []  # outputs the disk stopped taking (each told when it happened)
    try:
        reports.check([])  # before the capture: an hour of traffic must not end in a report that cannot be written
        identity, as_whom = _identity(user, group, [lambda: reports.check([]),
                                                    *_live_output_checks(jsonl_path, pcap_dir, spool_dir)])
        watch = _watchlist(watch_config, migration_ports, libvirtd_ports, ssh_ports, internal_nets)
        timeouts = replace(LIVE_TIMEOUTS, idle=idle_timeout, active=active_timeout)
        expression = bpf or capture_filter(watch)
        if identity:
            _load_report_modules(reports, watch, not no_secret_scan)
        jsonl = JsonLines.open(jsonl_path) if jsonl_path else None
        hand_over(identity, jsonl_path)  # made by root: the user the sensor becomes appends to it
        evidence = EvidencePcaps(pcap_dir, max_file_bytes=int(write_pcap_max_mb * MB),
                                 max_total_bytes=int(write_pcap_total_mb * MB)) if pcap_dir else None
        hand_over(identity, pcap_dir)
        lock = threading.RLock()  # stats come from a thread of their own; a full --jsonl tells while writing

        def tell(lines: list[str], records: list[dict]) -> None:
            with lock:
                for line in lines:
                    click.echo(f"inspector: {line}", err=True)
                if jsonl:
                    jsonl.write(records)

        def on_output_lost(line: str) -> None:
            lost.append(line)
            tell([f"error: {line}"], [{"type": "error", "ts": rfc3339(), "message": line}])

        def on_happenings(records: list[dict]) -> None:
            tell([_happening_line(r) for r in records], records)

        happenings = RecentHappenings(watch, on_happenings)

        def on_closed(closed) -> None:
            if jsonl:
                with lock:
                    jsonl.flows(closed)
            happenings.add(closed)

        options = {"watch": watch, "expression": expression, "snaplen": snaplen, "buffer_mb": buffer_mb,
                   "duration": duration, "on_alert": lambda alert: tell([alert.line()], [alert.record()]),
                   "secrets": not no_secret_scan, "stats_interval": stats_interval,
                   "on_stats": lambda stats: tell([stats.line()], [stats.record()]), "evidence": evidence,
                   "timeouts": timeouts, "on_closed": on_closed, "spool": spool_dir, "spool_resume": spool_resume,
                   "identity": identity,
                   "on_stall": lambda line: tell([f"warning: {line}"],
                                                 [{"type": "stall", "ts": rfc3339(), "message": line}])}
        if workers == 1:
            def on_started(sensor) -> None:
                click.echo(f"inspector: {as_whom}", err=True)
                click.echo(f"inspector: capturing on {iface} (filter: {expression}); stop with Ctrl-C", err=True)

            with _output_notices(on_output_lost):
                result, sensor = run_live(iface, on_started=on_started, **options)
            written, said = (evidence.written if evidence else []), sensor.errors
        else:
            from inspector.live_workers import run_live_workers

            def on_workers_started(_filters: list[str]) -> None:
                click.echo(f"inspector: {as_whom}", err=True)
                click.echo(f"inspector: capturing on {iface} with {workers} processes, one hash partition of the "
                           f"flows each (filter: {expression}); stop with Ctrl-C", err=True)

            def on_failure(line: str) -> None:
                tell([f"error: {line}; stopping"], [{"type": "error", "ts": rfc3339(), "message": line}])

            with _output_notices(on_output_lost):
                result, sensor = run_live_workers(iface, workers, on_started=on_workers_started,
                                                  on_failure=on_failure, whole_flows=jsonl is not None, **options)
            failures, written, said = sensor.failures, sensor.evidence, sensor.tcpdump_messages
            lost += [f"--write-pcap {entry.path}" for entry in written if entry.capped == "full"][:1]
        if jsonl:
            with _output_notices(on_output_lost):
                jsonl.final(result)
        lost += _write_reports(lambda: reports.write(result))
    except InspectorError as exc:
        _fail(str(exc))
    finally:
        if jsonl:
            jsonl.close()
    for line in said:
        click.echo(f"inspector: tcpdump: {inert(line)}", err=True)
    live = result.inputs.iloc[0]
    drops = (f"kernel drops {_known(sensor.kernel_drops)}"
             f"{_per_process(sensor.per_process_drops) if workers > 1 else ''}, "
             f"interface drops {_known(sensor.interface_drops)}, unread at stop {_known(live['unread_at_stop'])}")
    packets = f"{result.inputs['packets'].sum():,} packets"
    if workers > 1:
        packets += _per_process(sensor.per_process_packets)
    click.echo(f"inspector: capture on {iface} stopped ({live['end']}): {packets}; {drops}", err=True)
    for entry in written:
        capped = {"file": f", stopped at --write-pcap-max-mb {write_pcap_max_mb:g}",
                  "total": f", stopped at --write-pcap-total-mb {write_pcap_total_mb:g}",
                  "full": ", stopped: its disk was full" if entry.started else ", removed: no room for its header",
                  }.get(entry.capped, "")
        click.echo(f"inspector: evidence {entry.path}: {entry.packets:,} packets, {entry.bytes:,} bytes{capped}",
                   err=True)
    if not quiet:
        terminal.render(result, _console(), show_all=show_all, limit=limit)
    if failures:  # the reports were written, but a partition of the traffic is missing from them
        _fail(f"{len(failures)} of {workers} capture processes failed: " + "; ".join(failures) +
              "; the reports are from an incomplete capture", ExitStatus.CAPTURE_FAILED)
    if live["end"] == "capture-failed":
        _fail(f"capture on {iface} failed: {sensor.failure}; the reports are from an incomplete capture",
              ExitStatus.CAPTURE_FAILED)
    if lost:  # told as each happened; every other output is complete
        sys.exit(ExitStatus.OUTPUT_LOST)
    _exit_for_findings(result.findings, fail_on)


def _identity(user: str | None, group: str | None,
              checks: list[Callable[[], None]]) -> tuple[Identity | None, str]:
    """Who ``live`` parses packets as (``privileges.resolve``), its outputs
    checked writable by that user, and the line that says so at the start."""
    from inspector.privileges import as_user, resolve

    identity = resolve(user, group)

    def check_all() -> None:
        for check in checks:
            check()

    as_user(identity, check_all)
    if identity is not None:
        return identity, f"packets are parsed as {identity}, tcpdump runs as {identity.name}"
    if os.geteuid() == 0:
        return None, "packets are parsed as root" + ("" if user else " (no --user, not run through sudo): give "
                                                     "--user NAME to drop privileges once the capture is open")
    return None, f"packets are parsed as uid {os.geteuid()}"


def _load_report_modules(reports, watch: Watchlist, secrets: bool) -> None:
    """Write the reports asked for of the warm-up capture into a private
    temporary folder, and its summary to nowhere: the modules they import
    (pandas' CSV writer, rich's tables ...) load now, while this process can
    still read them (a Python under /root is closed to --user nobody)."""
    import io
    import tempfile

    from rich.console import Console

    from inspector.live import warm_up
    from inspector.report import terminal

    result = warm_up(watch, secrets)
    with tempfile.TemporaryDirectory(prefix="inspector-reports-") as folder:
        tmp = Path(folder)
        replace(reports, **{name: tmp / name for name in ("json_path", "html_path", "markdown_path", "csv_path",
                                                           "export_dir") if getattr(reports, name)}).write(result)
    terminal.render(result, Console(file=io.StringIO()), show_all=True)


def _live_output_checks(jsonl_path: Path | None, pcap_dir: Path | None,
                        spool_dir: Path | None) -> list[Callable[[], None]]:
    """Checks of the outputs ``live`` writes besides the reports."""
    from inspector.privileges import check_file_writable
    from inspector.report.output import check_writable

    checks: list[Callable[[], None]] = []
    if jsonl_path:
        checks.append(lambda: check_file_writable(jsonl_path))
    for folder in (pcap_dir, spool_dir):
        if folder:
            checks.append(lambda folder=folder: check_writable(folder, folder=True))
    return checks


def _known(count) -> str:
    """A count, or 'unknown' (None, <NA>)."""
    import pandas as pd

    return "unknown" if count is None or pd.isna(count) else f"{int(count):,}"


def _per_process(counts: list[int | None]) -> str:
    """`` (40 + 55 by process)``: what each capture process of ``live --workers`` counted."""
    return " (" + " + ".join("unknown" if n is None else f"{n:,}" for n in counts) + " by process)"


def _happening_line(record: dict) -> str:
    """The terminal line of an event or finding told while the sensor runs."""
    if record["type"] == "event":
        return (f"EVENT migration {record['src_h']} -> {record['dst_h']}: protection {record['protection']}, "
                f"{record['channels']}")
    return f"FINDING {record['severity']} {record['rule']}: {record['summary']}"


@contextmanager
def _imports_without_gc():
    """Import numpy, pandas and numba with the cyclic garbage collector off,
    then freeze what they made: imports create ~1 M long-lived objects and
    no garbage, so the collections they trigger (~0.05 CPU s) find nothing,
    and frozen objects are not scanned again by later full collections."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def _input_notices():
    """The library's notes on its inputs (a file named twice is read once) as one line each on stderr."""
    from inspector.errors import InputWarning

    return _warnings_to(InputWarning, lambda line: click.echo(f"inspector: {line}", err=True))


def _tell_when_compiling() -> None:
    """One line on stderr before numba compiles the kernels (a first run, or no
    writable cache); shown even with --quiet: a silent minute looks like a hang."""
    from inspector.jit import tell_when_compiling

    tell_when_compiling(lambda line: click.echo(f"inspector: {line}", err=True))


PIPED_WIDTH = 100  # columns of piped output when COLUMNS does not say


def _console() -> Console:
    """The terminal's width on a terminal; piped, $COLUMNS or PIPED_WIDTH.
    A reader that closes the pipe early (``| head``) ends the output, not the run."""
    from rich.console import Console

    class PipeConsole(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            _silence_stdout()

    console = PipeConsole()
    if console.is_terminal or os.environ.get("COLUMNS"):
        return console
    return PipeConsole(width=PIPED_WIDTH)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the flush at exit cannot fail on a closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _exit_for_findings(findings, fail_on: str | None) -> None:
    from inspector.findings.engine import at_or_above

    if fail_on and len(at_or_above(findings, fail_on)):
        sys.exit(ExitStatus.FINDINGS)


@main.command("diff")
@click.argument("before", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("after", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write the comparison as JSON.")
@FAIL_ON
@_watchlist_options
def diff_command(before: Path, after: Path, json_path: Path | None, fail_on: str | None, watch_config,
                 migration_ports, libvirtd_ports, ssh_ports, internal_nets) -> None:
    """Compare findings before and after a remediation: fixed, new, unchanged,
    and regressed (a protection in BEFORE, such as TLS, gone in AFTER).

    BEFORE and AFTER are capture files (analysed with the watchlist options, as
    by analyze) or JSON results of `inspector analyze --json`; --fail-on looks
    at AFTER and trips on any regression too.

    Example: inspector diff before.pcap after.pcap --migration-ports 49152-49215
    """
    from inspector.report import diff
    from inspector.report.output import check_not_input, write_atomically

    try:
        watch = _watchlist(watch_config, migration_ports, libvirtd_ports, ssh_ports, internal_nets)
        if json_path:
            check_not_input(json_path, [before, after])
        old, new = diff.load_findings(before, watch), diff.load_findings(after, watch)
        comparison = diff.compare(old, new)
        if json_path:
            write_atomically(json_path, lambda h: diff.write_json(comparison, before, after, h))
    except InspectorError as exc:
        _fail(str(exc))
    diff.render(comparison, _console())
    if fail_on and len(comparison.regressed):
        sys.exit(ExitStatus.FINDINGS)
    _exit_for_findings(new, fail_on)


@main.command("rules")
def rules_command() -> None:
    """List the finding rules: id, severity, title and the risks they realise."""
    from inspector.findings.rules import RULES

    for rule in RULES:
        click.echo(f"{rule.id:32} {rule.severity:9} {rule.title} [{', '.join(rule.risks) or 'no risk'}]")


@main.command("schema")
@click.option("--markdown", is_flag=True, help="Print the columns of every table as Markdown instead.")
def schema_command(markdown: bool) -> None:
    """Print the JSON Schema of `analyze --json` output.

    Example: inspector schema > result.schema.json
    """
    from inspector.report.json_report import json_schema
    from inspector.schema import markdown as columns_markdown

    click.echo(columns_markdown() if markdown else json.dumps(json_schema(), indent=1))


def run() -> None:
    """Console entry point: unexpected errors become one line, not a traceback."""
    try:
        main(standalone_mode=True)
    except SystemExit as done:
        _exit_without_teardown(done)
    except BrokenPipeError:  # the reader closed the pipe (`| head`): nothing left to tell it
        _silence_stdout()
        _exit_without_teardown(SystemExit(ExitStatus.OK))
    except Exception as exc:  # noqa: BLE001 - last line of defence
        from inspector.text import inert

        click.echo(f"inspector: internal error: {type(exc).__name__}: {inert(exc)} "
                   "(please report it with the command line)", err=True)
        _exit_without_teardown(SystemExit(ExitStatus.INTERNAL_ERROR))


def _exit_without_teardown(done: SystemExit) -> NoReturn:
    """Exit as ``done`` would, minus the interpreter's teardown of every
    module: with numba (LLVM) and pandas loaded it costs ~0.3 CPU s, more
    than a small analysis. Exit handlers run and the output is flushed
    first; with a thread still running, a message as exit code, or output
    that cannot be flushed (a closed pipe), Python exits the usual way."""
    code = done.code
    if not (code is None or isinstance(code, int)) or any(
            thread.is_alive() and not thread.daemon and thread is not threading.main_thread()
            for thread in threading.enumerate()):
        raise done
    atexit._run_exitfuncs()  # what Python runs at exit, before the teardown skipped here
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        raise done from None
    os._exit(int(code or 0))
