"""Flow layer: packet batches to bidirectional flows.

``FlowTable`` keeps per-flow and per-direction state (counters, sequence
positions, windowed byte histograms, reassembled regions for the detectors);
``frame.build_flows`` turns it into the flows table described in ``schema``.
"""
