"""Test hosts for the network tests: Linux network namespaces on one private subnet, and
partitions between them made with iptables DROP rules.

A ``Net`` is a switch (a bridge in a namespace of its own) with hosts on it, each a
namespace whose ``eth0`` is one end of a veth pair, the other end on the bridge. This
process (the tests, and whatever they start without a prefix: authsvc, nginx) is a host
too, through one veth of the root namespace: ``Net.root``.

Everything is named after the run: namespaces ``cwt-<pid>-<n>-<name>``, the root's link
``cwt<pid>r<n>`` (15 characters at most). ``Net.remove`` deletes what one Net made, by
name; ``sweep`` deletes what runs that no longer exist left behind (a killed pytest):
their namespaces, the processes still inside them, and their root links. Needs root, the
kernel's veth and bridge, Debian's iproute2 and iptables; the kernel here has no netem.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from canwatch_stack.procs import alive, free_port
from canwatch_stack.topology import Nodes, Placement

from harness import need_binary

_runs = itertools.count(1)
NAMESPACE = re.compile(r"^cwt-(\d+)-\d+-")
# In the environment of every process a network test run starts (they inherit it), the
# run's PID: what a run killed before its finalizers left running outside the namespaces
# (authsvc, nginx in the root namespace) is found by it.
RUN_MARK = "CWT_RUN"
ROOT_LINK = re.compile(r"^cwt(\d+)r\d+$")
# Private subnets 10.213.S.0/24: S is the first not routed on this machine already (nor
# by another run on it); the root namespace's address is .1, the hosts' .2 and up.
SUBNETS = "10.213"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    ip = need_binary("ip", "iproute2")
    out = subprocess.run([ip, *args], capture_output=True, text=True, timeout=10)
    if check and out.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)}: {out.stderr.strip()}")
    return out


def require() -> None:
    """Fail (never skip) unless this process can make namespaces and iptables rules."""
    if os.geteuid() != 0:
        pytest.fail("the network tests make network namespaces and iptables rules: run them as root")
    need_binary("ip", "iproute2")
    need_binary("iptables", "iptables")


def sweep() -> list[str]:
    """Remove the namespaces and root links of runs whose process is gone (killed before
    their finalizers ran); the names removed."""
    removed = []
    for line in _ip("netns", "list").stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        match = NAMESPACE.match(name)
        if match and not alive(int(match.group(1))):
            _delete_namespace(name)
            removed.append(name)
    for line in _ip("-o", "link", "show").stdout.splitlines():
        link = line.split(":")[1].strip().split("@")[0]
        match = ROOT_LINK.match(link)
        if match and not alive(int(match.group(1))):
            _ip("link", "del", link, check=False)
            removed.append(link)
    for pid, run in _marked_processes():
        if not alive(run):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            removed.append(f"pid {pid}")
    return removed


def mark_run() -> None:
    """Mark this process's environment, and so every process it starts, with its PID."""
    os.environ[RUN_MARK] = str(os.getpid())


def _marked_processes() -> Iterator[tuple[int, int]]:
    """(pid, run) of every process whose environment carries a run's mark."""
    needle = f"{RUN_MARK}=".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        for entry in environ.split(b"\0"):
            if entry.startswith(needle) and entry[len(needle) :].isdigit():
                yield int(proc.name), int(entry[len(needle) :])


def _delete_namespace(name: str) -> None:
    # A namespace lives on while a process is inside it: those of a dead run go first.
    for pid in _ip("netns", "pids", name, check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    _ip("netns", "del", name, check=False)


def _free_subnet() -> ipaddress.IPv4Network:
    routed = _ip("-4", "route", "show", "table", "all").stdout + _ip("-4", "addr").stdout
    for third in itertools.chain(range(os.getpid() % 200 + 20, 255), range(1, 255)):
        net = ipaddress.IPv4Network(f"{SUBNETS}.{third}.0/24")
        if f"{SUBNETS}.{third}." not in routed:
            return net
    raise AssertionError(f"no free /24 in {SUBNETS}.0.0/16")


class Host:
    """One test host: a namespace with one address on the Net's subnet."""

    def __init__(self, namespace: str, ip: str) -> None:
        self.namespace = namespace
        self.ip = ip

    @property
    def prefix(self) -> tuple[str, ...]:
        """The command that runs a program on this host."""
        return (need_binary("ip", "iproute2"), "netns", "exec", self.namespace)

    def run(self, *args: str) -> str:
        out = subprocess.run([*self.prefix, *args], capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            raise AssertionError(f"{' '.join(args)} on {self.namespace}: {out.stderr.strip()}")
        return out.stdout

    def cut(self, *peers: str, keep_port: int | None = None) -> None:
        """Drop every packet between this host and ``peers`` (addresses), both ways; with
        ``keep_port``, except TCP to and from that port of this host."""
        iptables = need_binary("iptables", "iptables")
        for peer in peers:
            # -I puts each rule first: the ACCEPTs go in after the DROPs to precede them.
            self.run(iptables, "-I", "INPUT", "-s", peer, "-j", "DROP")
            self.run(iptables, "-I", "OUTPUT", "-d", peer, "-j", "DROP")
            if keep_port is not None:
                port = str(keep_port)
                self.run(iptables, "-I", "INPUT", "-s", peer, "-p", "tcp", "--dport", port, "-j", "ACCEPT")
                self.run(iptables, "-I", "OUTPUT", "-d", peer, "-p", "tcp", "--sport", port, "-j", "ACCEPT")

    def heal(self) -> None:
        """Remove every rule of this host (all made by ``cut``: the namespace is ours)."""
        iptables = need_binary("iptables", "iptables")
        self.run(iptables, "-F", "INPUT")
        self.run(iptables, "-F", "OUTPUT")

    def dropped(self) -> int:
        """Packets the DROP rules of this host have dropped so far."""
        iptables = need_binary("iptables", "iptables")
        counts = self.run(iptables, "-L", "-v", "-n", "-x")
        return sum(int(line.split()[0]) for line in counts.splitlines() if " DROP " in f" {line} ")


class Net:
    """A switch and the test hosts on it, removed by name with ``remove``."""

    def __init__(self) -> None:
        require()
        self.run = f"cwt-{os.getpid()}-{next(_runs)}"
        self.subnet = _free_subnet()
        self._addresses = self.subnet.hosts()
        self.namespaces: list[str] = []
        self.root_link = f"cwt{os.getpid()}r{self.run.rsplit('-', 1)[1]}"
        self.hosts: dict[str, Host] = {}
        try:
            switch = self._namespace("switch")
            _ip("-n", switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", switch, "link", "set", "br0", "up")
            self.root = Host("", str(next(self._addresses)))
            _ip("link", "add", self.root_link, "type", "veth", "peer", "name", "p0", "netns", switch)
            self._plug("p0")
            _ip("addr", "add", f"{self.root.ip}/{self.subnet.prefixlen}", "dev", self.root_link)
            _ip("link", "set", self.root_link, "up")
        except BaseException:
            self.remove()
            raise

    def _namespace(self, name: str) -> str:
        namespace = f"{self.run}-{name}"
        _ip("netns", "add", namespace)
        self.namespaces.append(namespace)
        _ip("-n", namespace, "link", "set", "lo", "up")
        return namespace

    def _plug(self, port: str) -> None:
        switch = self.namespaces[0]
        _ip("-n", switch, "link", "set", port, "master", "br0")
        _ip("-n", switch, "link", "set", port, "up")

    def host(self, name: str) -> Host:
        """A new test host on the switch."""
        namespace = self._namespace(name)
        ip = str(next(self._addresses))
        port = f"p{len(self.hosts) + 1}"
        _ip(
            "-n",
            self.namespaces[0],
            "link",
            "add",
            port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            namespace,
        )
        self._plug(port)
        _ip("-n", namespace, "addr", "add", f"{ip}/{self.subnet.prefixlen}", "dev", "eth0")
        _ip("-n", namespace, "link", "set", "eth0", "up")
        self.hosts[name] = Host(namespace, ip)
        return self.hosts[name]

    def remove(self) -> None:
        """Delete this Net's namespaces (their veths go with them) and its root link. The
        processes started on its hosts are stopped by PID by whoever started them, first."""
        for namespace in reversed(self.namespaces):
            _delete_namespace(namespace)
        self.namespaces.clear()
        _ip("link", "del", self.root_link, check=False)


class OnHosts(Placement):
    """A Redis topology's nodes on test hosts: the first node started on ``hosts[0]``,
    the next on ``hosts[1]``, and so on round the list."""

    def __init__(self, *hosts: Host) -> None:
        self.hosts = hosts
        self.placed: dict[int, Host] = {}

    def on(self, port: int) -> Host:
        if port not in self.placed:
            self.placed[port] = self.hosts[len(self.placed) % len(self.hosts)]
        return self.placed[port]

    def host(self, port: int) -> str:
        return self.on(port).ip

    def command(self, port: int, args: list[str]) -> list[str]:
        return [*self.on(port).prefix, *args]


@contextlib.contextmanager
def network() -> Iterator[Net]:
    net = Net()
    try:
        yield net
    finally:
        net.remove()


class HostedRedis:
    """One redis-server on a test host (no persistence)."""

    def __init__(self, workdir: Path, host: Host) -> None:
        need_binary("redis-server", "redis-server")
        self.nodes = Nodes(workdir, OnHosts(host))
        self.port = free_port()
        self.host = host

    @property
    def url(self) -> str:
        return f"redis://{self.host.ip}:{self.port}/0"

    def start(self) -> None:
        self.nodes.spawn(self.port, self.nodes.base_args(self.port))

    def command(self, *args: str) -> str:
        return self.nodes.command(self.port, *args)

    def stop(self) -> None:
        self.nodes.stop()
