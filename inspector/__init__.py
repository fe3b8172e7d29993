"""inspector: prove from packets whether migration and API traffic is encrypted.

    >>> import inspector
    >>> result = inspector.analyze("captures/qemu-plain.pcap.gz")
    >>> result.flows[["resp_p", "watch", "verdict", "confidence", "reason"]]
"""

from inspector.analysis import Analysis, Progress, analyze
from inspector.errors import CaptureError, ConfigError, InspectorError
from inspector.pipeline import Timeouts
from inspector.report.export import load
from inspector.schema import SCHEMAS
from inspector.watch import Watchlist

__all__ = ["SCHEMAS", "Analysis", "CaptureError", "ConfigError", "InspectorError", "Progress", "Timeouts", "Watchlist",
           "analyze", "load"]
__version__ = "0.1.0"
