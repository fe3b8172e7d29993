#!/usr/bin/env python3
"""Peer measurement helper: iterate nfstream flows over a capture with the
default settings and print one JSON line {"flows", "packets", "version"}.

Run by benchmarks/run.py in its own process so its wall time and memory are
measured like any other tool's."""
import json
import sys


def main() -> int:
    import nfstream
    from nfstream import NFStreamer

    flows = packets = 0
    for flow in NFStreamer(source=sys.argv[1]):
        flows += 1
        packets += flow.bidirectional_packets
    print(json.dumps({"flows": flows, "packets": packets,
                      "version": getattr(nfstream, "__version__", None)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
