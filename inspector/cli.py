"""The ``inspector`` command line: thin commands over the library API."""

from __future__ import annotations

import csv
import json
import sys
from enum import IntEnum
from pathlib import Path

import click
from rich.console import Console

from inspector.analysis import analyze
from inspector.errors import InspectorError
from inspector.watch import Watchlist, parse_ports


class ExitStatus(IntEnum):
    """Exit codes (documented in README.md)."""

    OK = 0
    INTERNAL_ERROR = 1
    BAD_INPUT = 2  # unreadable capture, bad option or watchlist file


def _fail(message: str, status: ExitStatus = ExitStatus.BAD_INPUT) -> None:
    click.echo(f"inspector: error: {message}", err=True)
    sys.exit(status)


def _watchlist(config: str | None, migration_ports: str | None, libvirtd_ports: str | None,
               ssh_ports: str | None, internal_nets: tuple[str, ...]) -> Watchlist:
    from dataclasses import replace

    watch = Watchlist.from_toml(config) if config else Watchlist.default()
    changes = {}
    for key, spec, flag in (("migration_ports", migration_ports, "--migration-ports"),
                            ("libvirtd_ports", libvirtd_ports, "--libvirtd-ports"),
                            ("ssh_ports", ssh_ports, "--ssh-ports")):
        if spec is not None:
            changes[key] = parse_ports(spec, flag)
    return replace(watch, **changes).with_internal_nets(internal_nets)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="inspector")
def main() -> None:
    """Prove from packets whether live-migration and internal API traffic is encrypted."""


@main.command("analyze")
@click.argument("paths", nargs=-1, required=True, type=click.Path(dir_okay=True, path_type=Path))
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write the full result as JSON.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), help="Write the flows table as CSV.")
@click.option("--all", "show_all", is_flag=True, help="List every flow, not only watched ones.")
@click.option("--limit", default=100, show_default=True, help="Most flows listed in the terminal.")
@click.option("--watch-config", type=click.Path(path_type=Path), help="TOML file with a [watch] table.")
@click.option("--migration-ports", metavar="SPEC", help="Migration ports, e.g. 49152-49215 (default 49152-49261).")
@click.option("--libvirtd-ports", metavar="SPEC", help="libvirtd ports (default 16509,16514).")
@click.option("--ssh-ports", metavar="SPEC", help="SSH ports (default 22).")
@click.option("--internal-net", "internal_nets", multiple=True, metavar="CIDR",
              help="Internal API network; repeat for several.")
@click.option("-q", "--quiet", is_flag=True, help="No terminal summary.")
def analyze_command(paths, json_path, csv_path, show_all, limit, watch_config, migration_ports,
                    libvirtd_ports, ssh_ports, internal_nets, quiet) -> None:
    """Read capture files, classify every flow and report.

    Example: inspector analyze captures/qemu-plain.pcap.gz --json result.json
    """
    from inspector.report import json_report, terminal
    from inspector.report.output import check_not_input, write_atomically

    try:
        watch = _watchlist(watch_config, migration_ports, libvirtd_ports, ssh_ports, internal_nets)
        for out in (json_path, csv_path):
            if out:
                check_not_input(out, paths)
        result = analyze(paths, watch=watch)
        if json_path:
            write_atomically(json_path, lambda h: json_report.write_json(result, h))
        if csv_path:
            write_atomically(csv_path, lambda h: _write_flows_csv(result, h))
    except InspectorError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted", ExitStatus.INTERNAL_ERROR)
    if not quiet:
        console = Console()
        if not console.is_terminal:  # piped or redirected: do not squeeze to 80 columns
            console = Console(width=160)
        terminal.render(result, console, show_all=show_all, limit=limit)


def _write_flows_csv(result, handle) -> None:
    flows = result.flows.copy()
    flows["duration"] = flows["duration"].dt.total_seconds()
    flows.to_csv(handle, index=False, quoting=csv.QUOTE_MINIMAL)


@main.command("schema")
@click.option("--markdown", is_flag=True, help="Print the flows columns as a Markdown table instead.")
def schema_command(markdown: bool) -> None:
    """Print the JSON Schema of `analyze --json` output.

    Example: inspector schema > result.schema.json
    """
    from inspector.report.json_report import columns_markdown, json_schema

    click.echo(columns_markdown() if markdown else json.dumps(json_schema(), indent=1))


def run() -> None:
    """Console entry point: unexpected errors become one line, not a traceback."""
    try:
        main(standalone_mode=True)
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - last line of defence
        click.echo(f"inspector: internal error: {type(exc).__name__}: {exc} "
                   "(please report it with the command line)", err=True)
        sys.exit(ExitStatus.INTERNAL_ERROR)
