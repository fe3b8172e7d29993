"""Firewall rulesets as saved on a host (``iptables-save``, ``nft list
ruleset``) and who they let reach a TCP port.

Only the input path is evaluated: iptables' filter INPUT chain, nftables'
base chains on the input hook, with the chains they jump to. A rule that
only admits established connections opens nothing; a rule with a source
opens the port to that source and evaluation goes on for the others.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from inspector.config.parsers import Malformed

ANY = "any source"


@dataclass(frozen=True)
class Rule:
    ports: tuple[tuple[int, int], ...] | None  # None: every port
    protocol: str  # 'tcp', 'udp', '' for any
    source: str  # '' for any
    interface: str  # input interface, '' for any
    new_connections: bool  # False when it admits only established/related
    target: str  # ACCEPT, DROP, REJECT, RETURN, a chain name, or '' (no verdict)


@dataclass(frozen=True)
class Chain:
    name: str
    policy: str  # ACCEPT or DROP for the input chain, '' for a chain that is only jumped to
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Ruleset:
    kind: str  # iptables or nftables
    inputs: tuple[Chain, ...]  # chains where packets to the host start
    chains: dict[str, Chain]

    def sources_reaching(self, port: int) -> list[str]:
        """Sources a new TCP connection to ``port`` is accepted from: ``ANY``,
        networks, or 'via IFACE'; empty when every input chain drops it."""
        allowed: list[str] = []
        for chain in self.inputs:
            verdict = _walk(self, chain, port, allowed, depth=0)
            if verdict is None and chain.policy.upper() == "ACCEPT":
                allowed.append(ANY)
        return list(dict.fromkeys(allowed))


def _walk(ruleset: Ruleset, chain: Chain, port: int, allowed: list[str], depth: int) -> str | None:
    """Walk ``chain`` for a new TCP connection to ``port`` from any source; the
    verdict that stops every source, None when it falls through."""
    for rule in chain.rules:
        if not rule.new_connections or rule.protocol not in ("", "tcp"):
            continue
        if rule.ports is not None and not any(lo <= port <= hi for lo, hi in rule.ports):
            continue
        target = rule.target.upper()
        everyone = not rule.source and not rule.interface
        if target == "ACCEPT":
            allowed.append(ANY if everyone else rule.source or f"via {rule.interface}")
            if everyone:
                return "ACCEPT"
        elif target in ("DROP", "REJECT"):
            if everyone:
                return target
        elif target == "RETURN":
            if everyone:
                return None
        elif rule.target in ruleset.chains and depth < 16:
            verdict = _walk(ruleset, ruleset.chains[rule.target], port, allowed, depth + 1)
            if verdict and everyone:
                return verdict
    return None


# ---------------------------------------------------------------- iptables-save


def parse_iptables_save(text: str) -> Ruleset:
    """The filter table of ``iptables-save`` / ``ip6tables-save`` output (also /etc/sysconfig/iptables,
    /etc/iptables/rules.v4)."""
    policies: dict[str, str] = {}
    rules: dict[str, list[Rule]] = {}
    table = ""
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith("*"):
            table = line[1:]
        elif table != "filter":
            continue
        elif line.startswith(":"):
            parts = line[1:].split()
            policies[parts[0]] = parts[1] if len(parts) > 1 and parts[1] != "-" else ""
            rules.setdefault(parts[0], [])
        elif line.startswith("-A "):
            try:
                words = shlex.split(line)
            except ValueError:
                raise Malformed(f"line {number}: an unclosed quote") from None
            rules.setdefault(words[1], []).append(_iptables_rule(words[2:], number))
        else:
            raise Malformed(f"line {number}: not an iptables-save line")
    if not policies and not rules:
        raise Malformed("no filter table (not iptables-save output?)")
    chains = {name: Chain(name, policies.get(name, ""), tuple(rules.get(name, ()))) for name in policies | rules}
    return Ruleset("iptables", tuple(c for c in chains.values() if c.name == "INPUT"), chains)


def _iptables_rule(words: list[str], number: int) -> Rule:
    ports, protocol, source, interface, target, new = None, "", "", "", "", True
    i, negate = 0, False
    while i < len(words):
        word = words[i]
        value = words[i + 1] if i + 1 < len(words) else ""
        if word == "!":
            negate, i = True, i + 1
            continue
        if word in ("-p", "--protocol"):
            protocol = "" if negate else value
        elif word in ("-s", "--source", "--src"):
            source = "" if negate or value in ("0.0.0.0/0", "::/0") else value
        elif word in ("-i", "--in-interface"):
            interface = "" if negate else value
        elif word in ("--dport", "--destination-port", "--dports", "--destination-ports"):
            ports = None if negate else _ports(value.replace(":", "-"), number)
        elif word in ("--state", "--ctstate"):
            new = negate or "NEW" in value.split(",")
        elif word in ("-j", "--jump", "-g", "--goto"):
            target = value
        if word.startswith("-") and value and not value.startswith("-"):
            i += 1
        i += 1
        negate = False
    return Rule(ports, protocol, source, interface, new, target)


def _ports(spec: str, number: int) -> tuple[tuple[int, int], ...]:
    out = []
    for item in spec.replace(" ", "").strip("{}").split(","):
        if not item:
            continue
        lo, _, hi = item.partition("-")
        if not (lo.isdigit() and (hi.isdigit() or not hi)):
            raise Malformed(f"line {number}: {item[:20]!r} is not a port or a port range")
        out.append((int(lo), int(hi or lo)))
    return tuple(out)


# ---------------------------------------------------------------- nftables

_NFT_BLOCK = re.compile(r"^(table|chain)\s+(?:(\S+)\s+)?(\S+)\s*\{$")


def parse_nft_ruleset(text: str) -> Ruleset:
    """``nft list ruleset`` output (or an nftables.conf written the same way)."""
    chains: dict[str, Chain] = {}
    inputs: list[str] = []
    chain, policy, hook_input, rules = "", "", False, []
    depth = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        block = _NFT_BLOCK.match(line)
        if block:
            depth += 1
            if block[1] == "chain":
                chain, policy, hook_input, rules = block[3], "", False, []
            continue
        if line == "}":
            depth -= 1
            if chain:
                chains[chain] = Chain(chain, policy if hook_input else "", tuple(rules))
                if hook_input:
                    inputs.append(chain)
                chain = ""
            continue
        if not chain:
            if line.startswith(("flush", "define", "include")) or line.endswith("{") or depth:
                continue
            raise Malformed(f"line {number}: a rule outside any chain")
        if line.startswith("type "):
            hook_input = bool(re.search(r"\bhook\s+input\b", line))
            found = re.search(r"\bpolicy\s+(accept|drop)\b", line)
            policy = found[1].upper() if found else "ACCEPT"
            continue
        if line.startswith("policy "):
            policy = line.split()[1].rstrip(";").upper()
            continue
        rules.append(_nft_rule(line, number))
    if depth:
        raise Malformed("a table or chain block is never closed")
    if not chains:
        raise Malformed("no chains (not an nft ruleset?)")
    return Ruleset("nftables", tuple(chains[name] for name in inputs), chains)


def _nft_rule(line: str, number: int) -> Rule:
    protocol, ports, source, interface, new, target = "", None, "", "", True, ""
    found = re.search(r"\b(tcp|udp)\s+dport\s+(!=\s*)?(\{[^}]*\}|\S+)", line)
    if found:
        protocol = found[1]
        ports = None if found[2] else _ports(found[3], number)
    elif re.search(r"\b(meta\s+l4proto|ip\s+protocol)\s+(tcp|udp)\b", line):
        protocol = re.search(r"\b(tcp|udp)\b", line)[1]
    found = re.search(r"\bip6?\s+saddr\s+(!=\s*)?(\{[^}]*\}|\S+)", line)
    if found and not found[1]:
        source = found[2].strip("{} ")
    found = re.search(r"\biif(?:name)?\s+(!=\s*)?\"?([^\s\"]+)", line)
    if found and not found[1]:
        interface = found[2]
    found = re.search(r"\bct\s+state\s+(!=\s*)?(\{[^}]*\}|\S+)", line)
    if found:
        new = bool(found[1]) or "new" in found[2]
    found = re.search(r"\b(accept|drop|reject|return)\b|\b(?:jump|goto)\s+(\S+)", line)
    if found:
        target = found[1].upper() if found[1] else found[2]
    return Rule(ports, protocol, source, interface, new, target)


def parse_ruleset(text: str) -> Ruleset:
    """iptables-save or nft text, told apart by their first lines."""
    if re.search(r"^\s*table\s+\S+(\s+\S+)?\s*\{", text, re.MULTILINE):
        return parse_nft_ruleset(text)
    return parse_iptables_save(text)
