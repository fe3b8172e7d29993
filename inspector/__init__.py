"""inspector: prove from packets whether migration and API traffic is encrypted.

    >>> import inspector
    >>> result = inspector.analyze("captures/qemu-plain.pcap.gz")
    >>> result.flows[["resp_p", "watch", "verdict", "confidence", "reason"]]

The names below load their modules (numpy, pandas, numba) on first use, so
``import inspector`` and ``inspector --help`` stay instant.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from inspector.errors import CaptureError, ConfigError, InspectorError
from inspector.timeouts import Timeouts

if TYPE_CHECKING:
    from inspector.analysis import Analysis, Progress, analyze
    from inspector.config import ConfigAudit, audit_config
    from inspector.report.export import load
    from inspector.schema import SCHEMAS
    from inspector.watch import Watchlist

_LAZY = {"Analysis": "inspector.analysis", "Progress": "inspector.analysis", "analyze": "inspector.analysis",
         "audit_config": "inspector.config", "ConfigAudit": "inspector.config",
         "load": "inspector.report.export", "SCHEMAS": "inspector.schema", "Watchlist": "inspector.watch"}

__all__ = ["SCHEMAS", "Analysis", "CaptureError", "ConfigAudit", "ConfigError", "InspectorError", "Progress", "Timeouts",
           "Watchlist", "analyze", "audit_config", "load"]
__version__ = "0.1.0"


def __getattr__(name: str):
    """Import a public name's module when the name is first used (PEP 562);
    ``inspector.analysis`` and the other submodules load the same way."""
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if not name.startswith("_"):
        try:
            return import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
