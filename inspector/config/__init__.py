"""Audit the hosts' configuration (nova, libvirt, QEMU, SSH, policy,
firewall) for what it says about live migration, and check it against what
a capture shows: ``audit_config(paths, analysis=None)``."""

from __future__ import annotations

from inspector.config.audit import ConfigAudit, add_to_analysis, audit_config

__all__ = ["ConfigAudit", "add_to_analysis", "audit_config"]
