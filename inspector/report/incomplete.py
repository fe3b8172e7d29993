"""Which inputs of a result are incomplete live captures, said the same way by every report."""

from __future__ import annotations

from inspector.analysis import Analysis

FAILED = "capture-failed"  # schema.CAPTURE_ENDS
WHY = ("capture-failed", "capture-process-failed")  # schema.ANOMALY_KINDS that say why a capture failed


def incomplete_captures(result: Analysis) -> list[str]:
    """One line per live input whose capture failed (``inputs.end``):
    'live:eth1: tcpdump ended before ...'. Empty for files and clean stops;
    a result loaded from an older JSON has no ``end`` and nothing to say."""
    inputs = result.inputs
    if "end" not in inputs.columns:
        return []
    anomalies = result.anomalies
    lines = []
    for file in inputs.loc[inputs["end"] == FAILED, "file"]:
        why = anomalies.loc[(anomalies["file"] == file) & anomalies["kind"].isin(WHY), "detail"]
        lines.append(f"{file}: {'; '.join(why) or 'the capture failed'}")
    return lines


def incomplete_text(line: str) -> str:
    return f"INCOMPLETE CAPTURE: {line}; packets after the failure are not in this report"
