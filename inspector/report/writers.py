"""The report files one run writes, checked before the (long) analysis and
written atomically after it."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from inspector.analysis import Analysis
from inspector.errors import InspectorError, OutputError
from inspector.heap import give_back_free_memory
from inspector.report.output import check_not_input, check_writable, write_atomically
from inspector.schema import SCHEMAS
from inspector.tables import empty_frame
from inspector.text import file_name

if TYPE_CHECKING:
    from inspector.spool import ReportSpool


@dataclass(frozen=True)
class Reports:
    json_path: Path | None = None
    html_path: Path | None = None
    markdown_path: Path | None = None
    csv_path: Path | None = None
    export_dir: Path | None = None
    export_format: str = "csv"
    show_payload: bool = False

    def files(self) -> list[Path]:
        return [p for p in (self.json_path, self.html_path, self.markdown_path, self.csv_path) if p]

    def check(self, inputs: Iterable[Path]) -> None:
        """Fail before reading anything (an hour of capture, a folder of
        captures) if a report would overwrite an input or cannot be written."""
        inputs = list(inputs)
        for out in self.files():
            check_not_input(out, inputs)
            check_writable(out)
        if self.export_dir:
            from inspector.report.export import TABLES

            for name in TABLES:
                check_not_input(self.export_dir / f"{name}.{self.export_format}", inputs)
            check_writable(self.export_dir, folder=True)

    @property
    def streamable(self) -> bool:
        """Only reports that ``write_streamed`` writes from a ``ReportSpool``
        (the HTML, Markdown and exported tables read every table whole)."""
        return not (self.html_path or self.markdown_path or self.export_dir)

    def write_streamed(self, summary: Analysis, spool: ReportSpool) -> None:
        """The JSON and CSV reports with every flow read back from ``spool``, a
        chunk at a time; ``summary`` holds the kept flows, the events and findings.
        Its kept flows are let go once their events are read (``summary.flows``
        is left empty): the reports take every flow from the spool, and the
        kept ones (500 k flows: ~60 MB) need not stay under them. A report that
        cannot be written does not stop the other (``OutputError`` after both)."""
        from inspector.report import export, json_report

        event_of = dict(zip(summary.flows["uid"].tolist(), summary.flows["event"].tolist()))
        event_of = {uid: event for uid, event in event_of.items() if event}
        summary.flows = empty_frame(SCHEMAS["flows"])  # not a slice: that would hold the columns' buffers
        give_back_free_memory()  # the kept flows' and the findings' temporaries: the JSON head is encoded next

        def write_csv(handle) -> None:
            header = True
            for part in spool.flows_in_order(event_of):
                export.csv_ready(part).to_csv(handle, index=False, header=header, quoting=csv.QUOTE_MINIMAL)
                header = False
            if header:  # no flow: the header alone, as the table would write it
                export.csv_ready(summary.flows).to_csv(handle, index=False, quoting=csv.QUOTE_MINIMAL)

        write_each([
            ("--json", self.json_path, lambda path: write_atomically(path, lambda h: json_report.write_json(
                summary, h, show_payload=self.show_payload,
                flows=(spool.flow_count, spool.flows_in_order(event_of))))),
            ("--csv", self.csv_path, lambda path: write_atomically(path, write_csv)),
        ])

    def write(self, result: Analysis) -> None:
        """Every report asked for. One that cannot be written (a full disk, an
        I/O error) leaves nothing at its name and does not stop the others: each
        failure is a line of the ``OutputError`` raised once all were tried."""
        from inspector.report import export, json_report

        payload = self.show_payload

        def write_html(path: Path) -> None:
            from inspector.report import html

            write_atomically(path, lambda h: html.write_html(result, h, show_payload=payload))

        def write_markdown(path: Path) -> None:
            from inspector.report import markdown

            write_atomically(path, lambda h: markdown.write_markdown(result, h, show_payload=payload))

        write_each([
            ("--json", self.json_path,
             lambda path: write_atomically(path, lambda h: json_report.write_json(result, h, show_payload=payload))),
            ("--html", self.html_path, write_html),
            ("--markdown", self.markdown_path, write_markdown),
            ("--csv", self.csv_path, lambda path: write_atomically(path, lambda h: export.csv_ready(
                result.flows).to_csv(h, index=False, quoting=csv.QUOTE_MINIMAL))),
            ("--export", self.export_dir,
             lambda path: export.export_tables(result, path, self.export_format, show_payload=payload)),
        ])


def write_each(outputs: list[tuple[str, Path | None, Callable[[Path], object]]]) -> None:
    """Write each output given (option, path or None, writer); then one
    ``OutputError`` naming every one that failed, by option and file."""
    failures = []
    for option, path, write in outputs:
        if path is None:
            continue
        try:
            write(path)
        except InspectorError as exc:  # the writers' own line names the file
            failures.append(f"{option} {exc}")
        except OSError as exc:
            failures.append(f"{option} {file_name(path)}: {exc.strerror or exc}")
    if failures:
        raise OutputError(failures)
