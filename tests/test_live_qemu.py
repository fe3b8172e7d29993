"""`inspector live` on a real interface: a veth pair between two network
namespaces (MTU 1500, offloads off) that the test creates and removes, with a
real QEMU migration (plaintext and native TLS) and an SSH session crossing it.

The sensor runs inside the source namespace (``ip netns exec NS python -m
inspector live -i DEV``) with the default watchlist filter; its alerts (time
and kind), the JSONL stream and the final JSON report are asserted. The
namespaces, QEMU and the guest come from captures/make_captures.py (the
``qemu-*-mtu1500`` captures), loaded here as a module. Root only, as in CI.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DURATION = 15.0        # --duration of the sensor, seconds
MIGRATION_PORT = 49164  # inside the default watchlist's 49152-49261
SSH_PORT = 22           # the default watchlist's SSH port (its own namespace: nothing else listens)
ALERT_WITHIN = 5.0      # seconds from the migrate command to the alert
TOOLS = ("qemu-system-x86_64", "tcpdump", "ip", "ethtool", "certtool", "sshd", "ssh", "ssh-keygen")

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and live capture need root (CI runs as root)")]  # QEMU migrations through namespaces


def _make_captures():
    """captures/make_captures.py as a module (it only defines things on import)."""
    spec = importlib.util.spec_from_file_location("make_captures", ROOT / "captures" / "make_captures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mc = _make_captures()


@pytest.fixture
def net():
    """Two fresh namespaces joined by a veth pair at MTU 1500; always removed."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists()]
    assert not missing, f"{', '.join(missing)} not installed: run .ci/install-system-deps (.ci/apt-packages.txt)"
    pair = mc.NetnsPair(f"lq{secrets.token_hex(3)}", mc.MTU_NET_ADDRS, mtu=1500)
    with pair:
        for ns, dev in zip(pair.ns, pair.dev):
            shown = mc.run(["ip", "-n", ns, "link", "show", dev], capture_output=True, text=True).stdout
            assert " mtu 1500 " in shown and "state UP" in shown, shown
        try:
            yield pair
        finally:
            mc.PROCS.stop_all()  # nothing may outlive its namespace
    assert not any(Path("/run/netns", ns).exists() for ns in pair.ns)


class _Sensor:
    """``inspector live`` inside a namespace; its stderr lines with their arrival times."""

    def __init__(self, ns: str, dev: str, cwd: Path) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.proc = mc.PROCS.start(
            "inspector-live",
            [*mc.netns_exec(ns), sys.executable, "-m", "inspector", "live", "-i", dev, "--duration", str(DURATION),
             "--json", "result.json", "--jsonl", "live.jsonl", "-q"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)
        self.lines: list[tuple[float, str]] = []
        self.ended = 0.0
        threading.Thread(target=self._pump, daemon=True).start()
        self.wait_for(f"capturing on {dev}", 120)  # printed once tcpdump listens (after the kernels compile)

    def _pump(self) -> None:
        for line in self.proc.stderr:
            self.lines.append((time.monotonic(), line))
        self.ended = time.monotonic()

    def text(self) -> str:
        return "".join(line for _at, line in self.lines)

    def wait_for(self, text: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while True:
            for at, line in self.lines:
                if text in line:
                    return at
            assert self.proc.poll() is None or not self.ended, f"sensor exited:\n{self.text()}"
            assert time.monotonic() < deadline, f"no {text!r} within {timeout}s:\n{self.text()}"
            time.sleep(0.02)

    def finish(self) -> None:
        assert self.proc.wait(DURATION + 30) == 0, self.text()
        deadline = time.monotonic() + 5
        while not self.ended and time.monotonic() < deadline:
            time.sleep(0.02)


def _migrate_and_ssh(tmp: Path, net, *, tls: bool) -> tuple[_Sensor, float, float]:
    """The qemu-*-mtu1500 migration (1 MiB mixed-content image, paused 32 MiB guest), then
    256 KiB over SSH, both through the veth while the sensor watches the source end.
    Returns the sensor and when the migrate command was sent (monotonic, wall clock)."""
    image = tmp / "guest-ram.img"
    image.write_bytes(mc.mixed_content(1 << 20, seed=0x51455654))
    src_extra, dst_extra = mc.qemu_tls_objects(tmp) if tls else ([], [])
    host = net.addrs[1]
    with mc.private_sshd(tmp, SSH_PORT, host, net.ns[1]) as ssh_prefix, \
            mc.QemuPair(tmp, image, src_extra, dst_extra, src_ns=net.ns[0], dst_ns=net.ns[1]) as qp:
        if tls:
            qp.qd.cmd("migrate-set-parameters", **{"tls-creds": "tls0"})
            qp.qs.cmd("migrate-set-parameters", **{"tls-creds": "tls0", "tls-hostname": "localhost"})
        sensor = _Sensor(net.ns[0], net.dev[0], tmp)
        started, started_wall = time.monotonic(), time.time()
        qp.migrate(f"tcp:{host}:{MIGRATION_PORT}", MIGRATION_PORT, host=host, timeout=30)
        qp.quit()
        mc.run([*mc.netns_exec(net.ns[0]), *ssh_prefix, f"root@{host}", "cat > /dev/null"],
               input=mc.mixed_content(256 << 10, seed=0x53534821), stdin=None, timeout=30)
    sensor.finish()
    return sensor, started, started_wall


def _reports(tmp: Path) -> tuple[dict, list[dict]]:
    result = json.loads((tmp / "result.json").read_text())
    records = [json.loads(line) for line in (tmp / "live.jsonl").read_text().splitlines()]
    return result, records


def _flow(result: dict, port: int) -> dict:
    flows = [f for f in result["flows"] if f["resp_p"] == port]
    assert len(flows) == 1, flows
    return flows[0]


def _assert_common(result: dict, net, sensor: _Sensor) -> None:
    assert result["inputs"][0]["file"] == f"live:{net.dev[0]}"
    assert "kernel drops 0" in sensor.text(), sensor.text()
    ssh = _flow(result, SSH_PORT)
    assert (ssh["orig_h"], ssh["resp_h"]) == net.addrs
    assert ssh["verdict"] == "encrypted" and ssh["protocol"] == "ssh", ssh
    assert ssh["orig_bytes"] > 256 << 10  # the payload crossed the veth, encrypted


def test_plaintext_migration_on_a_veth_alerts_at_once(tmp_path: Path, net) -> None:
    sensor, started, started_wall = _migrate_and_ssh(tmp_path, net, tls=False)
    alerted = sensor.wait_for("ALERT", 0)
    assert alerted - started < ALERT_WITHIN, sensor.text()
    assert sensor.ended - alerted > DURATION / 2, sensor.text()  # long before the run ended
    result, records = _reports(tmp_path)
    alerts = [r for r in records if r["type"] == "alert"]
    # all on the migration flow, none on SSH; the guest RAM's config text may add a credentials alert
    assert {a["resp"] for a in alerts} == {f"{net.addrs[1]}:{MIGRATION_PORT}"}, alerts
    assert [a["kind"] for a in alerts].count("cleartext-migration") == 1, alerts
    alert = records[0]
    assert alert["kind"] == "cleartext-migration" and alert["protocol"] == "qemu-migration"
    assert alert["resp"] == f"{net.addrs[1]}:{MIGRATION_PORT}" and "QEVM" in alert["evidence"]
    fired = datetime.fromisoformat(alert["ts"]).timestamp()
    assert -0.1 < fired - started_wall < ALERT_WITHIN, (alert["ts"], started_wall)

    flow = _flow(result, MIGRATION_PORT)
    assert flow["verdict"] == "plaintext" and flow["protocol"] == "qemu-migration", flow
    assert (flow["orig_h"], flow["resp_h"]) == net.addrs and flow["orig_bytes"] > 1 << 20
    assert flow["orig_missed_bytes"] == 0
    event = next(e for e in result["events"] if flow["uid"] in e["uids"])
    assert event["protection"] == "none" and event["ram_bytes_clear"] > 0, event
    assert "plaintext-migration" in {f["rule"] for f in result["findings"]}
    assert {"alert", "flow", "event", "finding"} <= {r["type"] for r in records}
    _assert_common(result, net, sensor)


def test_tls_migration_on_a_veth_is_quiet(tmp_path: Path, net) -> None:
    sensor, _started, _wall = _migrate_and_ssh(tmp_path, net, tls=True)
    assert "ALERT" not in sensor.text(), sensor.text()
    result, records = _reports(tmp_path)
    assert not [r for r in records if r["type"] == "alert"], records

    flow = _flow(result, MIGRATION_PORT)
    assert flow["verdict"] == "encrypted" and flow["protocol"] == "tls", flow
    assert (flow["orig_h"], flow["resp_h"]) == net.addrs and flow["orig_bytes"] > 1 << 20
    event = next(e for e in result["events"] if flow["uid"] in e["uids"])
    assert event["protection"] == "TLS" and event["ram_bytes_clear"] == 0, event
    rules = {f["rule"]: f["severity"] for f in result["findings"]}
    assert rules.get("tls-protected-migration") == "info" and "plaintext-migration" not in rules, rules
    _assert_common(result, net, sensor)
