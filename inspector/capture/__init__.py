"""Capture layer: files (pcap, pcapng, gzip) to batches of decoded packet columns.

``CaptureReader(path)`` streams a file in chunks; ``decode.py`` holds the
compiled record walkers and header decoder; ``constants.py`` the wire numbers.
"""
