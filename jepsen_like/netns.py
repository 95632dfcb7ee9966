"""Network namespaces for real runs: one per server, joined by veth pairs to one bridge, and
partitions as iptables DROP rules inside the namespaces (Jepsen's `net/drop!`, on one host).

Rules of this module:

1. Only what this module created is ever touched. Every name carries the run's slot
   (`rcj<slot>br` the bridge, `rcj<slot>v<i>` the host ends of the veths, `rcj<slot>-<node>`
   the namespaces) and the subnet is `10.213.<slot>.0/24`; a slot is taken by creating its
   bridge, which fails if another run holds it. Teardown deletes exactly those objects.
2. Every command runs with a timeout and raises `NetnsError` with its stderr when it fails,
   so a machine that refuses (no CAP_NET_ADMIN, no iptables) says so in one line.
3. Partitions replace the whole filter table of a node's namespace in one `iptables-restore`
   (atomic per node), so "heal" is exact: an empty table, whatever was cut before.
4. `probe()` builds a two-node network, checks that TCP passes, that a DROP rule stops it,
   and that healing restores it, then removes everything. The runner uses namespaces only
   when the probe says yes, and otherwise falls back to dropping inside the transport.

Only addresses in our own subnet are ever named in a rule, and rules live only inside our
own namespaces: the host's tables are never modified.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["NamespaceNetwork", "NetnsError", "Probe", "probe"]

COMMAND_TIMEOUT_S: Final = 10.0
SLOTS: Final = range(1, 250)
SUBNET_PREFIX: Final = "10.213"
NODES_MAX: Final = 200  # host addresses .10 .. .209 in the /24
MARKER_DIR: Final = Path("/run/raftcron-jepsen")  # slot -> owner pid, for stale cleanup
PROBE_CONNECT_TIMEOUT_S: Final = 1.0


class NetnsError(RuntimeError):
    """A namespace or firewall command failed; the message names the command and its error."""


def run(argv: Sequence[str], *, input_text: str | None = None,
        timeout_s: float = COMMAND_TIMEOUT_S) -> str:
    """Run one command with a bound on its time; its stdout, or NetnsError."""
    try:
        done = subprocess.run(list(argv), input=input_text, capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except FileNotFoundError:
        raise NetnsError(f"{argv[0]}: command not found") from None
    except subprocess.TimeoutExpired:
        raise NetnsError(f"{' '.join(argv)}: no answer within {timeout_s:g} s") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise NetnsError(f"{' '.join(argv)}: {detail[-1] if detail else f'exit {done.returncode}'}")
    return done.stdout


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class NamespaceNetwork:
    """Servers `node_ids` each in a namespace on one bridge. Use as a context manager, or call
    `setup()` and, always, `teardown()`."""

    def __init__(self, node_ids: Sequence[str]) -> None:
        assert 0 < len(node_ids) <= NODES_MAX, f"between 1 and {NODES_MAX} nodes"
        assert len(set(node_ids)) == len(node_ids), "node ids must be distinct"
        self.node_ids = list(node_ids)
        self.slot: int | None = None
        self._namespaces: list[str] = []
        self._veths: list[str] = []
        self.partitioned = False

    # ---- names and addresses ---------------------------------------------------------------------
    @property
    def bridge(self) -> str:
        assert self.slot is not None, "setup() first"
        return f"rcj{self.slot}br"

    @property
    def host_address(self) -> str:
        """The bridge's address: where the runner (clients, nemesis) appears to the servers."""
        assert self.slot is not None, "setup() first"
        return f"{SUBNET_PREFIX}.{self.slot}.1"

    def namespace(self, node: str) -> str:
        assert self.slot is not None, "setup() first"
        return f"rcj{self.slot}-{node}"

    def address(self, node: str) -> str:
        assert self.slot is not None, "setup() first"
        return f"{SUBNET_PREFIX}.{self.slot}.{10 + self.node_ids.index(node)}"

    def exec_prefix(self, node: str) -> list[str]:
        """Prepend to a command to run it inside `node`'s namespace."""
        return ["ip", "netns", "exec", self.namespace(node)]

    # ---- life cycle ------------------------------------------------------------------------------
    def __enter__(self) -> NamespaceNetwork:
        self.setup()
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    def setup(self) -> None:
        """Take a free slot, then build the bridge, namespaces and veths; undo all on failure."""
        cleanup_stale()
        self.slot = self._take_slot()
        try:
            run(["ip", "addr", "add", f"{self.host_address}/24", "dev", self.bridge])
            run(["ip", "link", "set", self.bridge, "up"])
            for index, node in enumerate(self.node_ids):
                self._add_node(index, node)
        except BaseException:
            self.teardown()
            raise

    def _take_slot(self) -> int:
        start = os.getpid() % len(SLOTS)
        for step in range(len(SLOTS)):
            slot = SLOTS[(start + step) % len(SLOTS)]
            try:
                run(["ip", "link", "add", f"rcj{slot}br", "type", "bridge"])
            except NetnsError as error:
                if "exists" in str(error):
                    continue
                raise
            _write_marker(slot)
            return slot
        raise NetnsError("no free slot: 249 raftcron jepsen networks exist on this host")

    def _add_node(self, index: int, node: str) -> None:
        namespace, veth = self.namespace(node), f"rcj{self.slot}v{index}"
        run(["ip", "netns", "add", namespace])
        self._namespaces.append(namespace)
        run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace])
        self._veths.append(veth)
        run(["ip", "link", "set", veth, "master", self.bridge, "up"])
        run(["ip", "-n", namespace, "addr", "add", f"{self.address(node)}/24", "dev", "eth0"])
        run(["ip", "-n", namespace, "link", "set", "eth0", "up"])
        run(["ip", "-n", namespace, "link", "set", "lo", "up"])

    def teardown(self) -> None:
        """Delete our veths, namespaces and bridge. Never raises: it runs in `finally` blocks,
        and a leftover is reported on stderr instead. The veths go first and explicitly: a
        namespace is destroyed asynchronously after `ip netns del`, and the veth it holds
        would linger for a moment, blocking the next run that takes this slot."""
        if self.slot is None:
            return
        for veth in reversed(self._veths):
            _quietly(["ip", "link", "del", veth])
        self._veths.clear()
        for namespace in reversed(self._namespaces):
            _quietly(["ip", "netns", "del", namespace])
        self._namespaces.clear()
        _quietly(["ip", "link", "del", self.bridge])
        _remove_marker(self.slot)
        self.slot = None

    # ---- faults ----------------------------------------------------------------------------------
    def partition(self, sides: Sequence[Sequence[str]]) -> None:
        """Cut every pair of nodes on different sides, both directions. A node on no side is
        cut from everyone. Replaces any earlier partition."""
        side_of = {node: index for index, side in enumerate(sides) for node in side}
        for node in self.node_ids:
            others = [peer for peer in self.node_ids
                      if peer != node and side_of.get(peer, -1 - self.node_ids.index(peer))
                      != side_of.get(node, -1 - self.node_ids.index(node))]
            self._install(node, [self.address(peer) for peer in others])
        self.partitioned = True

    def heal(self) -> None:
        for node in self.node_ids:
            self._install(node, [])
        self.partitioned = False

    def _install(self, node: str, blocked: Sequence[str]) -> None:
        for address in blocked:
            assert address.startswith(f"{SUBNET_PREFIX}.{self.slot}."), "only our own subnet"
        lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
        for address in blocked:
            lines.append(f"-A INPUT -s {address}/32 -j DROP")
            lines.append(f"-A OUTPUT -d {address}/32 -j DROP")
        lines.append("COMMIT")
        run([*self.exec_prefix(node), "iptables-restore"], input_text="\n".join(lines) + "\n")


def _quietly(argv: list[str]) -> None:
    try:
        run(argv)
    except NetnsError as error:
        if "Cannot find" not in str(error) and "No such" not in str(error):
            print(f"netns: cleanup: {error}", file=sys.stderr)


def _write_marker(slot: int) -> None:
    try:
        MARKER_DIR.mkdir(parents=True, exist_ok=True)
        (MARKER_DIR / f"{slot}.pid").write_text(f"{os.getpid()}\n")
    except OSError:
        pass  # stale cleanup is a convenience; without markers nothing is ever removed


def _remove_marker(slot: int) -> None:
    try:
        (MARKER_DIR / f"{slot}.pid").unlink()
    except OSError:
        pass


def cleanup_stale() -> list[int]:
    """Remove networks of earlier runs whose owner process is gone (a run killed before its
    teardown). Only slots with our marker file and a dead owner are touched."""
    removed: list[int] = []
    try:
        markers = list(MARKER_DIR.glob("*.pid"))
    except OSError:
        return removed
    for marker in markers:
        try:
            slot, owner = int(marker.stem), int(marker.read_text().strip())
        except (OSError, ValueError):
            continue
        if slot not in SLOTS or _pid_alive(owner):
            continue
        try:
            listed = run(["ip", "netns", "list"])
        except NetnsError:
            return removed
        for line in listed.splitlines():
            name = line.split()[0] if line.split() else ""
            if name.startswith(f"rcj{slot}-"):
                _quietly(["ip", "netns", "del", name])
        _quietly(["ip", "link", "del", f"rcj{slot}br"])
        _remove_marker(slot)
        removed.append(slot)
    return removed


# ---- what this machine allows --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Probe:
    available: bool
    reason: str  # why not, or what was checked
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {"available": self.available, "reason": self.reason,
                "elapsed_s": round(self.elapsed_s, 3)}


_PROBE: Probe | None = None
_CONNECT_SNIPPET = (
    "import socket,sys\n"
    "s=socket.socket(); s.settimeout(float(sys.argv[3]))\n"
    "try:\n s.connect((sys.argv[1], int(sys.argv[2]))); print('ok')\n"
    "except OSError as e:\n print('blocked', e)\n"
)


def probe(*, refresh: bool = False) -> Probe:
    """Can this machine give each server its own namespace and cut links with iptables?
    Cached for the process; `refresh` probes again."""
    global _PROBE
    if _PROBE is not None and not refresh:
        return _PROBE
    started = time.monotonic()
    missing = [tool for tool in ("ip", "iptables-restore") if shutil.which(tool) is None]
    if missing:
        _PROBE = Probe(False, f"not installed: {', '.join(missing)} "
                              "(apt-get install iproute2 iptables)")
        return _PROBE
    try:
        _probe_network()
    except NetnsError as error:
        _PROBE = Probe(False, str(error), time.monotonic() - started)
        return _PROBE
    _PROBE = Probe(True, "namespaces, veth/bridge and iptables DROP rules work here",
                   time.monotonic() - started)
    return _PROBE


def _probe_network() -> None:
    with NamespaceNetwork(["p1", "p2"]) as network:
        listener = subprocess.Popen(
            [*network.exec_prefix("p2"), sys.executable, "-c",
             "import socket,time\n"
             f"s=socket.socket(); s.bind(('{network.address('p2')}', 7));"
             " s.listen(16); print('listening', flush=True)\n"
             "s.settimeout(15)\n"
             "while True:\n c,_=s.accept(); c.close()\n"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert listener.stdout is not None
            if listener.stdout.readline().strip() != "listening":
                raise NetnsError("a listener inside a namespace did not start")
            target = network.address("p2")
            if _connect(network, "p1", target) != "ok":
                raise NetnsError("TCP between two namespaces on a bridge does not pass "
                                 "(a host firewall on bridged traffic?)")
            if not _host_reaches(target):
                raise NetnsError("the host cannot reach a namespace through the bridge")
            network.partition([["p1"], ["p2"]])
            if _connect(network, "p1", target, timeout_s=0.3) == "ok":
                raise NetnsError("an iptables DROP rule inside a namespace did not stop TCP")
            network.heal()
            if _connect(network, "p1", target) != "ok":
                raise NetnsError("TCP did not pass again after the DROP rules were removed")
        finally:
            listener.kill()
            listener.wait(timeout=5)


def _connect(network: NamespaceNetwork, node: str, address: str,
             timeout_s: float = PROBE_CONNECT_TIMEOUT_S) -> str:
    output = run([*network.exec_prefix(node), sys.executable, "-c", _CONNECT_SNIPPET, address, "7",
                  str(timeout_s)])
    return output.strip().split()[0] if output.strip() else ""


def _host_reaches(address: str) -> bool:
    try:
        with socket.create_connection((address, 7), timeout=PROBE_CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False
