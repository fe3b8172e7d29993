"""Protocol knowledge: recognise protocols from reassembled stream bytes.

Statistics say a stream looks random or structured; protocol framing says
what it is, and framing readable in clear proves a stream is not encrypted
(a QEVM header, multifd packet headers, libvirt RPC headers, NBD requests,
HTTP headers), while a validated TLS or SSH handshake whose encrypted phase
is seen or announced proves it is.

    from inspector.protocols import detect, detect_flow
    for d in detect(head, direction="orig", at_start=True):   # head: first 16 KiB of a stream
        print(d.protocol, d.proves, d.evidence)
    # qemu-migration cleartext QEVM v3 header, machine pc-i440fx-7.2; RAM records 4 PAGE
    # (16.0 KiB guest memory in clear), 256 ZERO; 1 section: ram; blocks pc.ram, ...
    detect_flow(orig_head, resp_head)   # both directions; one 'tls'/'ssh' detection per handshake

The table of detectors is ``DETECTORS`` (registry.py); each protocol module
documents its format, its sources, and the fields it extracts. Pure Python,
no dependencies; every detector is bounded in work and never raises. The
pipeline runs only the rows a compiled prefilter (``prefilter.py``, numba)
marks as candidates for each region, from the signatures each row declares.
"""

from .base import ANY, CLEARTEXT, ENCRYPTED, NOTHING, ORIG, PROVES, RESP, Detection, Detector
from .registry import DETECTORS, detect, detect_flow

__all__ = ["ANY", "CLEARTEXT", "DETECTORS", "Detection", "Detector", "ENCRYPTED", "NOTHING", "ORIG",
           "PROVES", "RESP", "detect", "detect_flow"]
