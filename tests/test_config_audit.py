"""inspector config-audit and analyze --config: host configuration folders
written from Debian's shipped defaults (tests/config_hosts.py), each finding
made by its case and absent from a hardened configuration, the
configuration checked against the shipped real captures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import inspector
from inspector.cli import main
from inspector.config.firewall import ANY, parse_ruleset
from inspector.config.parsers import Malformed, parse_libvirt_conf, parse_oslo_ini
from inspector.config.ssh import (
    parse_authorized_keys,
    parse_private_key,
    parse_sshd_config,
)
from tests.config_hosts import HARDENED_IPTABLES, SECRETS, hardened, ssh_key, write_host

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
NATIVE_TLS = {("libvirt", "live_migration_with_native_tls"): "true", ("libvirt", "live_migration_scheme"): "tls"}
INFO_RULES = {"config-migration-protected", "config-no-firewall-rules", "config-migration-disabled"}


def rules_of(audit) -> set[str]:
    return set(audit.findings["rule"])


def evidence_of(audit, rule: str) -> str:
    return "\n".join(audit.findings.loc[audit.findings["rule"] == rule, "evidence"])


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture
def hosts(tmp_path: Path) -> Path:
    return tmp_path / "hosts"


@pytest.fixture(scope="module")
def plain_analysis():
    return inspector.analyze(CAPTURES / "qemu-plain.pcap.gz")


@pytest.fixture(scope="module")
def tls_analysis():
    return inspector.analyze(CAPTURES / "qemu-tls.pcap.gz")


# ---------------------------------------------------------------- the hardened baseline


def test_hardened_hosts_have_no_finding_above_info(hosts, keys):
    hardened(hosts, "compute-1", 11, keys)
    hardened(hosts, "compute-2", 12, keys)
    audit = inspector.audit_config(hosts)
    assert list(audit.config_hosts["host"]) == ["compute-1", "compute-2"]
    assert rules_of(audit) == {"config-migration-protected"}, audit.findings[["rule", "evidence"]].to_string()
    assert audit.config_problems.empty
    row = audit.config_hosts.iloc[0]
    assert row["protection"] == "TLS" and row["migration_ports"] == "49152-49215"
    assert list(row["addresses"]) == ["10.0.0.11", "10.1.0.11"]


def test_tables_have_the_documented_columns_even_when_empty(tmp_path):
    from inspector.schema import CONFIG_SCHEMAS

    for audit in (inspector.audit_config(tmp_path / "missing"), inspector.audit_config([])):
        for name, columns in CONFIG_SCHEMAS.items():
            assert list(getattr(audit, name).columns) == list(columns), name


def test_debian_defaults_migrate_in_clear(hosts):
    write_host(hosts, "compute-1")
    audit = inspector.audit_config(hosts / "compute-1")
    assert rules_of(audit) == {"config-migration-in-clear", "config-no-firewall-rules"}
    finding = audit.findings[audit.findings["rule"] == "config-migration-in-clear"].iloc[0]
    assert finding["severity"] == "high" and finding["hosts"] == "compute-1"
    assert "live_migration_with_native_tls = false" in finding["evidence"]
    assert "49152-49215" in finding["evidence"]
    settings = audit.config_settings.set_index("key")
    assert settings.loc["live_migration_with_native_tls", "source"] == "default"
    assert settings.loc["migration_port_max", "value"] == "49215"


# ---------------------------------------------------------------- one case per finding

CASES = {
    "config-native-tls-plain-uri": dict(nova={("libvirt", "live_migration_scheme"): "tcp"}),  # OSSN-0089
    "config-tls-not-forced": dict(qemu={"default_tls_x509_verify": "1"}),
    "config-tls-peer-not-verified": dict(qemu={"migrate_tls_force": "1", "migrate_tls_x509_verify": "0"}),
    "config-libvirtd-tcp-no-auth": dict(libvirtd={"listen_tcp": "1", "auth_tcp": '"none"'}),
    "config-policy-allows-everyone": dict(policy='"os_compute_api:os-migrate-server:migrate_live": ""\n'),
    "config-migration-disabled": dict(policy='"os_compute_api:os-migrate-server:migrate_live": "!"\n'),
    "config-ports-open": dict(firewall=("iptables-save", HARDENED_IPTABLES.replace(":INPUT DROP", ":INPUT ACCEPT")
                                        .replace("-A INPUT -p tcp -m multiport --dports 16509,16514,49152:49261 -j DROP\n",
                                                 ""))),
    "config-no-firewall-rules": dict(firewall=None),
}


@pytest.mark.parametrize("rule", sorted(CASES))
def test_each_finding_comes_from_its_case(hosts, keys, rule):
    changes = dict(CASES[rule])
    if rule == "config-native-tls-plain-uri":  # the OSSN-0089 pitfall: native TLS, scheme left at tcp
        changes["nova"] = {("DEFAULT", "my_ip"): "10.0.0.11", ("libvirt", "live_migration_with_native_tls"): "true",
                           ("libvirt", "live_migration_scheme"): "tcp",
                           ("libvirt", "live_migration_inbound_addr"): "10.1.0.11"}
    elif rule == "config-tls-peer-not-verified":
        changes["libvirtd"] = {"tls_no_verify_certificate": "1"}
    hardened(hosts, "compute-1", 11, keys, **changes)
    audit = inspector.audit_config(hosts)
    found = rules_of(audit) - {"config-migration-protected"}
    assert found == {rule}, audit.findings[["rule", "evidence"]].to_string()


def test_tls_peer_not_verified_names_both_settings(hosts, keys):
    hardened(hosts, "compute-1", 11, keys, qemu={"migrate_tls_force": "1", "migrate_tls_x509_verify": "0"},
             libvirtd={"tls_no_verify_certificate": "1"})
    evidence = evidence_of(inspector.audit_config(hosts), "config-tls-peer-not-verified")
    assert "migrate_tls_x509_verify" in evidence and "tls_no_verify_certificate = 1" in evidence


def test_nft_ruleset_open_to_any_source(hosts, keys):
    ruleset = """table inet filter {
	chain input {
		type filter hook input priority filter; policy accept;
		ct state established,related accept
		iifname "lo" accept
		ip saddr 10.1.0.0/24 tcp dport { 16514, 49152-49215 } accept
		tcp dport 16509 drop
	}
}
"""
    hardened(hosts, "compute-1", 11, keys, firewall=("nft_-a_list_ruleset", ruleset))
    audit = inspector.audit_config(hosts)
    evidence = evidence_of(audit, "config-ports-open")
    assert "tcp/49152 accepted from any source" in evidence and "nftables" in evidence
    assert "tcp/16509" not in evidence  # dropped for everyone
    assert "10.1.0.0/24" not in evidence  # the migration network itself is fine


def test_passwordless_unrestricted_ssh_between_hosts(hosts, keys):
    private_key, public = ssh_key(keys, "nova")
    hardened(hosts, "compute-1", 11, keys, authorized={"nova": public})
    hardened(hosts, "compute-2", 12, keys, private={"nova": private_key})
    audit = inspector.audit_config(hosts)
    assert rules_of(audit) - {"config-migration-protected"} == {"config-ssh-unrestricted"}
    evidence = evidence_of(audit, "config-ssh-unrestricted")
    fingerprint = parse_private_key(private_key).fingerprint
    assert "compute-1: " in evidence and fingerprint in evidence
    assert "any command" in evidence and "from any address" in evidence
    assert "without passphrase, is on compute-2" in evidence
    assert "PRIVATE KEY" not in evidence and public.split()[1] not in evidence


def test_a_passphrase_protected_key_is_told_apart(keys):
    protected, _ = ssh_key(keys, "protected", passphrase="correct horse")
    plain, _ = ssh_key(keys, "plain")
    assert parse_private_key(protected).encrypted and not parse_private_key(plain).encrypted
    assert parse_private_key(protected).fingerprint  # OpenSSH keeps the public half in clear
    assert parse_private_key("not a key") is None


def test_hosts_that_disagree(hosts, keys):
    hardened(hosts, "compute-1", 11, keys)
    hardened(hosts, "compute-2", 12, keys, qemu={"migrate_tls_force": "1", "migration_port_min": "49300",
                                                 "migration_port_max": "49400"})
    audit = inspector.audit_config(hosts)
    assert rules_of(audit) - {"config-migration-protected"} == {"config-hosts-disagree"}
    assert "49152-49215 on compute-1; 49300-49400 on compute-2" in evidence_of(audit, "config-hosts-disagree")


# ---------------------------------------------------------------- the configuration against the wire


def test_native_tls_claimed_but_plaintext_on_the_wire(hosts, plain_analysis, tls_analysis):
    write_host(hosts, "compute-1", nova=NATIVE_TLS, qemu={"migrate_tls_force": "1"})
    audit = inspector.audit_config(hosts, plain_analysis)
    contradiction = audit.findings[audit.findings["rule"] == "config-contradicted-by-traffic"]
    assert len(contradiction) == 1
    row = contradiction.iloc[0]
    assert row["severity"] == "critical" and row["finding"] == "F1"
    assert list(row["events"]) == list(plain_analysis.events["event"])
    assert set(row["uids"]) == set(plain_analysis.events["uids"].iloc[0])
    assert "configured TLS" in row["evidence"] and "'none'" in row["evidence"]
    assert row["bytes_exposed"] > 1_000_000
    assert "config-contradicted-by-traffic" not in rules_of(inspector.audit_config(hosts, tls_analysis))


def test_tunnelled_configured_but_direct_flows(hosts, plain_analysis):
    write_host(hosts, "compute-1", nova={("libvirt", "live_migration_tunnelled"): "true",
                                         ("libvirt", "live_migration_scheme"): "tls"})
    audit = inspector.audit_config(hosts, plain_analysis)
    assert {"config-tunnelled-but-direct", "config-contradicted-by-traffic"} <= rules_of(audit)
    assert "127.0.0.1:49152" in evidence_of(audit, "config-tunnelled-but-direct")


def test_observed_ports_outside_the_configured_range(hosts, plain_analysis, tls_analysis):
    write_host(hosts, "compute-1", qemu={"migration_port_min": "50000", "migration_port_max": "50100"})
    audit = inspector.audit_config(hosts, plain_analysis)
    assert "observed migration port(s) 49152" in evidence_of(audit, "config-ports-differ-from-traffic")
    write_host(hosts, "compute-2")
    assert "config-ports-differ-from-traffic" not in rules_of(inspector.audit_config(hosts / "compute-2", tls_analysis))


def test_events_are_matched_to_hosts_by_address(hosts, plain_analysis):
    """A host whose addresses the capture's migration does not involve is not contradicted by it."""
    write_host(hosts, "compute-1", nova={**NATIVE_TLS, ("DEFAULT", "my_ip"): "192.0.2.10"})
    assert "config-contradicted-by-traffic" not in rules_of(inspector.audit_config(hosts, plain_analysis))
    write_host(hosts, "compute-2", nova={**NATIVE_TLS, ("DEFAULT", "my_ip"): "127.0.0.1"})
    write_host(hosts, "compute-3", nova=NATIVE_TLS)  # no address: only events no other host explains
    audit = inspector.audit_config(hosts, plain_analysis)
    assert audit.findings.loc[audit.findings["rule"] == "config-contradicted-by-traffic", "hosts"].tolist() == ["compute-2"]
    (hosts / "compute-2").rename(hosts.parent / "elsewhere")
    audit = inspector.audit_config(hosts, plain_analysis)
    assert audit.findings.loc[audit.findings["rule"] == "config-contradicted-by-traffic", "hosts"].tolist() == ["compute-3"]


def test_watchlist_from_the_configuration(hosts, keys):
    hardened(hosts, "compute-1", 11, keys, qemu={"migrate_tls_force": "1", "migration_port_min": "60000",
                                                 "migration_port_max": "60010"})
    watch = inspector.audit_config(hosts).watchlist()
    assert {60000, 60010, 49152, 49261} <= watch.migration_ports and 60011 not in watch.migration_ports
    assert [str(n) for n in watch.internal_nets] == ["10.0.0.11/32"]


# ---------------------------------------------------------------- bad input


def test_bad_files_are_recorded_and_the_audit_goes_on(hosts, keys, tmp_path):
    host = hardened(hosts, "compute-1", 11, keys)
    nova = host / "etc" / "nova" / "nova.conf"
    nova.write_text(nova.read_text().replace("[database]\n", f"[database]\nthe password is {SECRETS[1]}\n", 1))
    (host / "etc" / "libvirt" / "qemu.conf").write_text('migrate_tls_force = [ "unclosed"\n')
    (host / "etc" / "ssh" / "sshd_config").write_bytes(b"Port 22\n\xff\xfe\n")
    audit = inspector.audit_config([hosts, tmp_path / "missing"])
    problems = dict(zip(audit.config_problems["file"], audit.config_problems["problem"]))
    assert problems[str(tmp_path / "missing")] == "no such file or folder"
    assert problems[str(nova)].startswith("malformed: line ") and "not a `key = value`" in problems[str(nova)]
    assert "never closed" in problems[str(host / "etc" / "libvirt" / "qemu.conf")]
    assert problems[str(host / "etc" / "ssh" / "sshd_config")] == "not UTF-8 text"
    assert "config-file-problem" in rules_of(audit)
    # the rest was read: the firewall and the nova_migration key are still judged
    assert "config-ports-open" not in rules_of(audit) and len(audit.config_hosts) == 1
    assert SECRETS[1] not in json.dumps(audit.config_problems.to_dict("records"))


def test_values_of_the_wrong_type_are_problems_not_crashes(hosts):
    write_host(hosts, "compute-1", libvirtd={"listen_tcp": '"1"'}, qemu={"migration_port_min": '"low"'},
               nova={("libvirt", "live_migration_tunnelled"): "maybe"})
    audit = inspector.audit_config(hosts)
    problems = " | ".join(audit.config_problems["problem"])
    assert "listen_tcp: expected a number" in problems and "migration_port_min: expected a number" in problems
    assert "live_migration_tunnelled: 'maybe' is not a boolean" in problems
    assert audit.config_hosts["migration_ports"].tolist() == ["49152-49215"]


def test_markup_in_a_file_is_text_in_the_html(hosts, tmp_path):
    write_host(hosts, "compute-1", nova={("libvirt", "live_migration_uri"): "qemu+tcp://<script>alert(1)</script>/system"})
    out = tmp_path / "a.html"
    assert CliRunner().invoke(main, ["config-audit", str(hosts), "-q", "--html", str(out)]).exit_code == 0
    page = out.read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_cli_bad_input_is_one_line_per_file_and_exit_2(hosts, tmp_path):
    write_host(hosts, "compute-1")
    result = CliRunner().invoke(main, ["config-audit", str(hosts), str(tmp_path / "missing"), "-q"])
    assert result.exit_code == 2, result.output
    assert f"inspector: warning: {tmp_path / 'missing'}: no such file or folder" in result.stderr
    assert "Traceback" not in result.output


# ---------------------------------------------------------------- the CLI and the reports


def test_cli_reports_fail_on_and_no_secret_anywhere(hosts, tmp_path):
    write_host(hosts, "compute-1", nova=NATIVE_TLS)
    out = tmp_path / "out"
    out.mkdir()
    args = ["config-audit", str(hosts), "--capture", str(CAPTURES / "qemu-plain.pcap.gz"), "--json",
            str(out / "a.json"), "--html", str(out / "a.html"), "--markdown", str(out / "a.md")]
    result = CliRunner().invoke(main, args + ["--fail-on", "critical"])
    assert result.exit_code == 3, result.output
    assert "config-contradicted-by-traffic" in result.stdout
    document = json.loads((out / "a.json").read_text())
    assert document["findings"][0]["rule"] == "config-contradicted-by-traffic"
    assert document["summary"]["findings"]["critical"] == 1
    assert {s["key"] for s in document["settings"]} >= {"live_migration_with_native_tls", "migrate_tls_force"}
    page = (out / "a.html").read_text()
    assert 'id="configuration"' in page and "config-contradicted-by-traffic" in page
    texts = [result.output, *(p.read_text() for p in out.iterdir())]
    for secret in SECRETS:
        assert not any(secret in text for text in texts)
    assert CliRunner().invoke(main, ["config-audit", str(hosts), "-q"]).exit_code == 0


def test_analyze_with_config_joins_the_findings(hosts, tmp_path):
    write_host(hosts, "compute-1", nova=NATIVE_TLS)
    out = tmp_path / "out"
    out.mkdir()
    result = CliRunner().invoke(main, ["analyze", str(CAPTURES / "qemu-plain.pcap.gz"), "--config", str(hosts),
                                       "--json", str(out / "r.json"), "--html", str(out / "r.html"),
                                       "--markdown", str(out / "r.md"), "--fail-on", "critical"])
    assert result.exit_code == 3, result.output
    findings = json.loads((out / "r.json").read_text())["findings"]
    rules = [f["rule"] for f in findings]
    assert {"plaintext-migration", "config-contradicted-by-traffic"} <= set(rules)
    assert [f["finding"] for f in findings] == [f"F{i}" for i in range(1, len(findings) + 1)]
    assert [f["severity"] for f in findings][:2] == ["critical", "critical"]
    page = (out / "r.html").read_text()
    assert 'id="configuration"' in page and 'href="#configuration"' in page
    assert "## Configuration" in (out / "r.md").read_text()
    for secret in SECRETS:
        assert not any(secret in p.read_text() for p in out.iterdir()) and secret not in result.output


def test_analyze_with_config_on_the_streamed_path(hosts, tmp_path):
    """-q with only --json streams flows from a spool: the configuration findings join there too."""
    write_host(hosts, "compute-1", nova=NATIVE_TLS)
    out = tmp_path / "r.json"
    result = CliRunner().invoke(main, ["analyze", str(CAPTURES / "qemu-plain.pcap.gz"), "--config", str(hosts), "-q",
                                       "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "config-contradicted-by-traffic" in {f["rule"] for f in json.loads(out.read_text())["findings"]}


def test_html_report_without_config_has_no_configuration_link(tmp_path):
    out = tmp_path / "r.html"
    assert CliRunner().invoke(main, ["analyze", str(CAPTURES / "http-api.pcap"), "-q", "--html", str(out)]).exit_code == 0
    assert "#configuration" not in out.read_text()


# ---------------------------------------------------------------- discovery


def test_a_folder_of_sosreports_and_a_kolla_folder(tmp_path, keys):
    hardened(tmp_path / "site", "compute-1", 11, keys)
    hardened(tmp_path / "site", "compute-2", 12, keys)
    assert list(inspector.audit_config(tmp_path / "site").config_hosts["host"]) == ["compute-1", "compute-2"]
    kolla = tmp_path / "kolla"
    (kolla / "nova-compute").mkdir(parents=True)
    (kolla / "nova-libvirt").mkdir()
    (kolla / "nova-compute" / "nova.conf").write_text("[libvirt]\nlive_migration_with_native_tls = true\n"
                                                    "live_migration_scheme = tls\n")
    (kolla / "nova-libvirt" / "qemu.conf").write_text("migrate_tls_force = 1\n")
    (kolla / "nova-libvirt" / "libvirtd.conf").write_text('listen_tcp = 1\nauth_tcp = "none"\n')
    audit = inspector.audit_config(kolla)
    assert list(audit.config_hosts["host"]) == ["kolla"]
    assert rules_of(audit) == {"config-libvirtd-tcp-no-auth", "config-migration-protected", "config-no-firewall-rules"}


def test_tripleo_compute_nova_conf_is_preferred(tmp_path):
    generated = tmp_path / "var" / "lib" / "config-data" / "puppet-generated"
    for service, tls in (("nova", "false"), ("nova_libvirt", "true")):
        folder = generated / service / "etc" / "nova"
        folder.mkdir(parents=True)
        (folder / "nova.conf").write_text(f"[libvirt]\nlive_migration_with_native_tls = {tls}\n"
                                          "live_migration_scheme = tls\n")
    audit = inspector.audit_config(tmp_path)
    assert audit.config_hosts["protection"].tolist() == ["TLS"]


# ---------------------------------------------------------------- parsers


def test_oslo_ini_default_is_a_section_and_the_last_repeat_wins():
    sections = parse_oslo_ini("[DEFAULT]\nmy_ip = 10.0.0.1\n[libvirt]\nlive_migration_scheme = tcp\n"
                              "live_migration_scheme = \"tls\"\n[libvirt]\nvirt_type = kvm\n")
    assert sections["libvirt"] == {"live_migration_scheme": "tls", "virt_type": "kvm"}
    assert sections["DEFAULT"] == {"my_ip": "10.0.0.1"}
    with pytest.raises(Malformed, match="line 1: a setting before any"):
        parse_oslo_ini(f"password = {SECRETS[0]}\n")


def test_virconf_lists_span_lines_and_comments_stay_out_of_strings():
    settings = parse_libvirt_conf('a = [ "x",\n  "y#z" ]  # comment\nb = 1\nc = "q # r"\n')
    assert settings == {"a": ["x", "y#z"], "b": 1, "c": "q # r"}
    with pytest.raises(Malformed, match="line 1"):
        parse_libvirt_conf("a = os.system('x')\n")


def test_authorized_keys_options_with_quotes_and_commas(keys):
    _, public = ssh_key(keys, "options")
    line = ('from="10.1.0.0/24,!10.1.0.9",command="nc -U \\"/run/libvirt/libvirt-sock\\"",no-pty,'
            'environment="A=b c" ' + public)
    key, = parse_authorized_keys(f"# comment\n\n{line}\n")
    assert key.sources == "10.1.0.0/24,!10.1.0.9"
    assert key.command == 'nc -U "/run/libvirt/libvirt-sock"'
    assert "no-pty" in key.options and key.options["environment"] == "A=b c"
    assert key.key_type == "ssh-ed25519" and key.fingerprint.startswith("SHA256:")
    with pytest.raises(Malformed, match="line 1: unclosed quote"):
        parse_authorized_keys('command="echo ' + public)


def test_sshd_match_blocks_override_for_their_user():
    config = parse_sshd_config("PasswordAuthentication yes\nMatch User nova_migration,other Address 10.1.0.0/24\n"
                               "  ForceCommand \"/bin/nova-migration-wrapper\"\n  PasswordAuthentication no\n")
    assert config.for_user("nova_migration")["forcecommand"] == "/bin/nova-migration-wrapper"
    assert config.for_user("nova_migration")["passwordauthentication"] == "no"
    assert config.for_user("nova") == {"passwordauthentication": "yes"}
    assert config.address_restricted("nova_migration") and not config.address_restricted("nova")


def test_iptables_first_match_and_sources():
    ruleset = parse_ruleset(HARDENED_IPTABLES)
    assert ruleset.sources_reaching(49152) == ["via lo", "10.1.0.0/24"]
    assert ruleset.sources_reaching(16509) == ["via lo"]
    assert ruleset.sources_reaching(22) == ["via lo", ANY]
    assert ruleset.sources_reaching(49300) == ["via lo"]  # the INPUT policy drops the rest
