"""inspector: prove from packets whether migration and API traffic is encrypted.

    >>> import inspector
    >>> result = inspector.analyze("captures/qemu-plain.pcap.gz")
    >>> result.flows[["resp_p", "watch", "verdict", "confidence", "reason"]]
"""

from inspector.analysis import Analysis, analyze
from inspector.errors import CaptureError, ConfigError, InspectorError
from inspector.watch import Watchlist

__all__ = ["Analysis", "CaptureError", "ConfigError", "InspectorError", "Watchlist", "analyze"]
__version__ = "0.1.0"
