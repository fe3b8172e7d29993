"""Flow layer: packet batches to bidirectional flows.

``FlowTable`` keeps per-flow and per-direction state (counters, sequence
positions, windowed byte histograms, reassembled regions for the detectors);
``frame.flow_columns`` turns it into the columns of the flows table (``inspector.schema``).
"""
