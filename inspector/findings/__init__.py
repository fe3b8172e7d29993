"""Findings: rules (kept as data) over flows, events and secrets found in
cleartext payload, each with severity, risks, proof and remediation."""
