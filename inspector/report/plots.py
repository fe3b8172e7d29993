"""Plots of an analysis, seaborn style: tidy frames in, keyword-only options,
the matplotlib ``Axes`` out so callers can compose figures.

matplotlib is imported inside the functions (it costs ~0.3 s and only the
HTML report and notebooks need it). Without an ``ax`` each function draws
on a new ``Figure`` with an Agg canvas, never through pyplot: no global
figure registry, no display needed. In a notebook pass
``ax=plt.subplots()[1]`` to see the plot inline.

Each function takes a table as the ``Analysis`` returns it (``r.windows``,
``r.windows_of(uid)``, ``r.byte_histograms``); the flows to draw and their
verdicts are optional extras.

Example::

    result = inspector.analyze("captures/qemu-plain.pcap.gz")
    ax = entropy_vs_chi2(result.windows)  # coloured by window label
    ax = entropy_vs_chi2(windows_with_verdicts(result.windows, result.flows))  # by flow verdict
    ax.figure.savefig("windows.png")
"""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from inspector.schema import PROTECTIONS, VERDICTS
from inspector.flows.kernels import HEAD_BYTES, WINDOW_BYTES
from inspector.units import human_bytes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

VERDICT_COLOURS = {"plaintext": "#d62728", "compressed": "#ff7f0e", "encrypted": "#2ca02c", "unknown": "#7f7f7f"}
# A window label in the colour of the verdict it points to.
LABEL_COLOURS = {"random": VERDICT_COLOURS["encrypted"], "compressed": VERDICT_COLOURS["compressed"],
                 "plain": VERDICT_COLOURS["plaintext"]}
MAX_LINES = 8  # flow directions drawn when no flows are given (the most bytes first)
# The verdict each migration protection looks like: guest data readable or not.
PROTECTION_SHADE = {protection: {"none": "plaintext", "libvirt tunnel over plain TCP": "plaintext",
                                 "compressed only": "compressed", "unknown": "unknown"}.get(protection, "encrypted")
                    for protection in PROTECTIONS}
PROTECTION_COLOURS = {protection: VERDICT_COLOURS[shade] for protection, shade in PROTECTION_SHADE.items()}
UNIFORM_CHI2 = (255 - 3 * 23, 255 + 3 * 23)  # uniform bytes: 255 +- 23 (README, "How verdicts are made")
FIGURE_SIZE = (8.0, 4.5)  # inches: 800 x 450 px at the report's dpi
MIN_BAR_SHARE = 1 / 60  # of the timeline's span: ~8 px wide at the report's size and dpi


def new_axes(size: tuple[float, float] = FIGURE_SIZE) -> Axes:
    """The axes of a new figure drawn by the Agg backend (no pyplot, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    return figure.add_subplot()


def _axes(ax: Axes | None, size: tuple[float, float] = FIGURE_SIZE) -> Axes:
    return ax if ax is not None else new_axes(size)


def _no_data(ax: Axes, what: str) -> Axes:
    ax.text(0.5, 0.5, f"no {what}", ha="center", va="center", transform=ax.transAxes, color="#7f7f7f")
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def _in_byte_unit(values: pd.Series) -> tuple[pd.Series, str]:
    """``values`` in the binary unit of their largest (so ticks fall on round numbers) and its name."""
    power = 0
    while power + 1 < len(BYTE_UNITS) and values.max() >= 1024 ** (power + 1):
        power += 1
    return values / 1024 ** power, BYTE_UNITS[power]


def _log_bytes_axis(axis) -> None:
    """Ticks at 4 KiB, 16 KiB, 64 KiB, ... labelled as sizes."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    axis.set_major_locator(LogLocator(base=4))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(lambda value, _pos: human_bytes(value)))


def flow_label(flow) -> str:
    """'127.0.0.1:49152 migration (C3PdFzH5DsDv)': responder, role and uid, for legends and rows."""
    host = f"[{flow.resp_h}]" if ":" in str(flow.resp_h) else flow.resp_h
    return f"{host}:{flow.resp_p} {flow.watch} ({flow.uid})"


def windows_with_verdicts(windows: pd.DataFrame, flows: pd.DataFrame) -> pd.DataFrame:
    """Windows of ``flows`` with their flow's verdict and stream offset (tidy input for the plots)."""
    verdicts = flows[["uid", "verdict"]].astype({"uid": "string", "verdict": str})
    joined = windows.astype({"uid": "string"}).merge(verdicts, on="uid", how="inner")
    return joined.assign(offset=window_offsets(joined["window"]))


def window_offsets(window: pd.Series) -> pd.Series:
    """Stream offset of each window's middle: window 0 is the 8 KiB head, then 64 KiB windows."""
    start = np.where(window == 0, 0, HEAD_BYTES + (window - 1) * WINDOW_BYTES)
    middle = np.where(window == 0, HEAD_BYTES // 2, WINDOW_BYTES // 2)
    return pd.Series(start + middle, index=window.index, dtype="int64")


def entropy_vs_chi2(windows: pd.DataFrame, *, x: str = "chi2", y: str = "entropy", hue: str | None = None,
                    max_points: int | None = 20_000, ax: Axes | None = None) -> Axes:
    """Entropy against chi-square (log scale) per window, coloured by ``hue``:
    the flow's ``verdict`` when the windows carry it (``windows_with_verdicts``),
    else the window's own ``label`` (random, compressed, plain).

    The shaded band is where uniform bytes fall (255 +- 3 sigma): ciphertext
    sits in it, compressed data to its right at the same entropy, text and
    framing far right and low. ``max_points`` keeps huge captures readable.
    """
    ax = _axes(ax)
    data = windows[windows[x] > 0]
    if data.empty:
        return _no_data(ax, "payload windows")
    if max_points is not None and len(data) > max_points:
        data = data.sample(max_points, random_state=0)
    hue = hue or ("verdict" if "verdict" in data.columns else "label")
    colours = VERDICT_COLOURS if hue == "verdict" else LABEL_COLOURS if hue == "label" else {}
    values = data[hue].astype(str)
    names = [v for v in colours if v in set(values)] or sorted(set(values))
    ax.axvspan(*UNIFORM_CHI2, color="#2ca02c", alpha=0.12, label="uniform bytes")
    for name in names:
        part = data[values == name]
        ax.scatter(part[x], part[y], s=14, alpha=0.6, color=colours.get(name), label=name if hue in (
            "verdict", "label") else f"{hue} {name}", edgecolors="none")
    ax.set_xscale("log")
    ax.set_xlabel("chi-square against uniform bytes (255 d.o.f., log scale)")
    ax.set_ylabel("entropy (bits/byte)")
    ax.set_ylim(top=8.1)
    ax.set_title("Payload windows: entropy against chi-square")
    ax.legend(loc="lower left", fontsize="small")
    return ax


def flow_timeline(flows: pd.DataFrame, *, max_flows: int = 40, ax: Axes | None = None) -> Axes:
    """One bar per flow from its first to its last packet, coloured by verdict.

    Beyond ``max_flows`` the flows with the most bytes are kept. A flow too
    short to see (a 20 ms plaintext burst in a minute of capture) is drawn
    MIN_BAR_SHARE of the time span wide, so a critical one is never a sliver.
    """
    if flows.empty:
        return _no_data(_axes(ax), "flows")
    shown = flows.assign(_bytes=flows["orig_bytes"] + flows["resp_bytes"])
    shown = shown.nlargest(max_flows, "_bytes").sort_values("ts", ascending=False, kind="stable")
    ax = _axes(ax, (FIGURE_SIZE[0], max(2.0, 0.9 + 0.3 * len(shown))))
    from matplotlib.dates import DateFormatter, date2num

    start = date2num(shown["ts"].dt.tz_convert(None).to_numpy())
    width = shown["duration"].dt.total_seconds().to_numpy() / 86400.0
    span = max(float((start + width).max() - start.min()), 1 / 86400.0)
    colours = [VERDICT_COLOURS[str(v)] for v in shown["verdict"]]
    ax.barh(np.arange(len(shown)), np.maximum(width, span * MIN_BAR_SHARE), left=start, color=colours, height=0.6)
    ax.set_yticks(np.arange(len(shown)), [flow_label(f) for f in shown.itertuples(index=False)], fontsize="small")
    ax.margins(x=0.03)
    ax.xaxis.set_major_formatter(DateFormatter("%H:%M:%S"))
    ax.set_xlabel("time (UTC)")
    ax.set_title("Watched flows over time")
    _verdict_legend(ax, shown["verdict"])
    return ax


def _verdict_legend(ax: Axes, verdicts: pd.Series) -> None:
    from matplotlib.patches import Patch

    present = set(verdicts.astype(str))
    handles = [Patch(color=VERDICT_COLOURS[v], label=v) for v in VERDICTS if v in present]
    ax.legend(handles=handles, loc="best", fontsize="small")


def bytes_by_verdict(flows: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Payload bytes (both directions) of ``flows`` per verdict."""
    moved = (flows["orig_bytes"] + flows["resp_bytes"]).groupby(flows["verdict"].astype(str)).sum()
    return _byte_bars(_axes(ax), moved, VERDICT_COLOURS, what="payload", title="Bytes by verdict")


def bytes_by_protection(events: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """RAM and disk bytes of the migration events per protection."""
    moved = (events["ram_bytes"] + events["disk_bytes"]).groupby(events["protection"].astype(str)).sum()
    return _byte_bars(_axes(ax), moved, PROTECTION_COLOURS, what="RAM and disk", title="Migration bytes by protection",
                      horizontal=True)


def _byte_bars(ax: Axes, totals: pd.Series, colours: dict[str, str], *, what: str, title: str,
               horizontal: bool = False) -> Axes:
    """One bar per category of ``colours`` (in its order) with bytes in ``totals``."""
    names = [name for name in colours if totals.get(name, 0) > 0]
    if not names:
        return _no_data(ax, f"{what} bytes")
    sizes, unit = _in_byte_unit(totals[names])
    if horizontal:
        ax.barh(names, sizes, color=[colours[n] for n in names])
        ax.invert_yaxis()
        ax.set_xlabel(f"{what} ({unit})")
    else:
        ax.bar(names, sizes, color=[colours[n] for n in names])
        ax.set_ylabel(f"{what} ({unit})")
    ax.set_title(title)
    return ax


def notable_flows(flows: pd.DataFrame, *, max_clear: int = 3) -> pd.DataFrame:
    """The largest cleartext (plaintext, compressed) migration flows and the largest encrypted flow."""
    size = flows["orig_bytes"] + flows["resp_bytes"]
    verdict = flows["verdict"].astype(str)
    migration = flows["watch"].astype(str) == "migration"
    clear = flows[migration & verdict.isin(["plaintext", "compressed"])]
    clear = clear.loc[size[clear.index].sort_values(ascending=False, kind="stable").index[:max_clear]]
    encrypted = size[verdict == "encrypted"].sort_values(ascending=False, kind="stable").index[:1]
    return pd.concat([clear, flows.loc[encrypted]])


def _drawn_directions(data: pd.DataFrame, flows: pd.DataFrame | None, weight: str) -> list[tuple[str, str, str | None,
                                                                                                  str]]:
    """(uid, direction, colour, label) of each line to draw: with ``flows``, the
    direction of each flow that sent more, in its verdict's colour; without,
    the ``MAX_LINES`` flow directions of ``data`` with the most ``weight``."""
    if flows is not None:
        out = []
        for flow in flows.itertuples(index=False):
            direction = "orig" if flow.orig_bytes >= flow.resp_bytes else "resp"
            out.append((flow.uid, direction, VERDICT_COLOURS[str(flow.verdict)],
                        f"{flow_label(flow)}: {flow.verdict}, {direction}"))
        return out
    sizes = data.groupby([data["uid"].astype(str), data["direction"].astype(str)])[weight].sum()
    biggest = sizes[sizes > 0].sort_values(ascending=False, kind="stable").index[:MAX_LINES]
    return [(uid, direction, None, f"{uid} {direction}") for uid, direction in biggest]


def entropy_series(windows: pd.DataFrame, flows: pd.DataFrame | None = None, *, ax: Axes | None = None) -> Axes:
    """Entropy per window against stream offset: one line per flow of ``flows``
    (the direction that sent more, in its verdict's colour), or without
    ``flows`` per flow direction in ``windows`` (``r.windows_of(uid)``: both
    directions of one flow).

    How a stream's randomness changes along it (head handshake, zero pages,
    random pages).
    """
    ax = _axes(ax)
    styles = iter(["-", "--", ":", "-."] * 8)
    drawn = 0
    for uid, direction, colour, label in _drawn_directions(windows, flows, "bytes"):
        own = windows[(windows["uid"] == uid) & (windows["direction"].astype(str) == direction)]
        if own.empty:
            continue
        own = own.sort_values("window")
        ax.plot(window_offsets(own["window"]), own["entropy"], next(styles), marker="o", markersize=3,
                color=colour, label=label)
        drawn += 1
    if not drawn:
        return _no_data(ax, "windows for these flows")
    ax.set_xscale("log")
    _log_bytes_axis(ax.xaxis)
    ax.set_xlabel("stream offset (log scale)")
    ax.set_ylabel("entropy (bits/byte)")
    ax.set_ylim(0, 8.2)
    ax.set_title("Entropy along notable flows" if flows is not None else "Entropy along the stream")
    ax.legend(loc="lower right", fontsize="small")
    return ax


def byte_histograms(histograms: pd.DataFrame, flows: pd.DataFrame | None = None, *, ax: Axes | None = None) -> Axes:
    """Share of each byte value 0-255 in the sampled regions, log scale: one
    line per flow of ``flows`` (the direction that sent more), or without
    ``flows`` per flow direction in ``histograms`` (``r.byte_histograms``: the
    ``MAX_LINES`` largest). Ciphertext is flat at 1/256, text peaks on
    letters, guest RAM on 0x00."""
    ax = _axes(ax, (FIGURE_SIZE[0], FIGURE_SIZE[1] + 1.5))  # room for the legend below
    styles = iter(["-", "--", ":", "-."] * 8)
    drawn = 0
    for uid, direction, colour, label in _drawn_directions(histograms, flows, "count"):
        own = histograms[(histograms["uid"] == uid) & (histograms["direction"].astype(str) == direction)]
        total = int(own["count"].sum()) if len(own) else 0
        if not total:
            continue
        share = own.groupby("byte")["count"].sum().reindex(range(256), fill_value=0).to_numpy() / total
        ax.step(np.arange(256), np.maximum(share, 1e-6), next(styles), where="mid", linewidth=1,
                color=colour, label=f"{label} ({human_bytes(total)} sampled)")
        drawn += 1
    if not drawn:
        return _no_data(ax, "byte histograms for these flows")
    ax.axhline(1 / 256, color="#444444", linewidth=0.8, linestyle=":", label="uniform bytes (1/256)")
    ax.set_yscale("log")
    ax.set_ylim(1e-6, 1)
    ax.set_xlim(0, 255)
    ax.set_xticks([0, 0x20, 0x41, 0x61, 0x7F, 0xC0, 0xFF], ["0x00", "0x20", "'A'", "'a'", "0x7f", "0xc0", "0xff"])
    ax.set_xlabel("byte value")
    ax.set_ylabel("share of sampled bytes (log)")
    ax.set_title("Byte-value histograms of notable flows" if flows is not None else "Byte-value histograms")
    # Below the axes: the lines span the whole plot (0x00 peaks, floors at 1e-6), any corner would hide some.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize="small", frameon=False)
    return ax


def figure_png_base64(ax_or_figure: Axes | Figure, *, dpi: int = 100) -> str:
    """The figure as a base64 PNG, for a ``data:image/png;base64,`` URI."""
    figure = getattr(ax_or_figure, "figure", ax_or_figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")
