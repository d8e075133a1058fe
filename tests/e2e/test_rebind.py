"""Resilience of one session: a client whose NAT mapping changes in the
middle of a read keeps its QUIC connection (the host follows it to its new
address), and a read through an outage resumes soon after the path comes
back, on the same connection (the resume delay is printed).

Topology, built here with unique names and removed on every path:

    client 10.233.N.2 -- 10.233.N.1 router 10.234.N.1 -- 10.234.N.2 host
                                   (snat out of its "wan" side)

Processes enter a namespace with `nsenter --net`, which keeps the shared
mount namespace, so a FUSE mount made inside is visible to this test."""
import hashlib
import os
import random
import re
import threading
import time

import pytest

from conftest import Host, Mount, MiB, Netns, sha256, wait_for


class Routed(Netns):
    """client -- router (snat) -- host, in three namespaces."""

    PREFIX = "whr"
    ROLES = ("c", "r", "h")

    def build(self):
        n = random.randrange(1, 250)
        self.caddr, self.rlan = "10.233.%d.2" % n, "10.233.%d.1" % n
        self.rwan, self.haddr = "10.234.%d.1" % n, "10.234.%d.2" % n
        self.veth("c", "eth0", "r", "lan")
        self.veth("h", "eth0", "r", "wan")
        for role, dev, addr in (("c", "eth0", self.caddr),
                                ("r", "lan", self.rlan),
                                ("r", "wan", self.rwan),
                                ("h", "eth0", self.haddr)):
            self.addr(role, dev, addr + "/24")
        self.ip("c", "route", "add", "default", "via", self.rlan)
        self.run("r", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.snat(20000, 20999)

    def snat(self, lo, hi):
        """(Re)write the router's rule: out of "wan" from ports lo-hi."""
        self.run("r", "nft", "-f", "-", input="""
table ip whnat
delete table ip whnat
table ip whnat {
 chain post {
  type nat hook postrouting priority 100;
  oifname "wan" ip protocol udp snat to %s:%d-%d
  oifname "wan" ip protocol tcp snat to %s:%d-%d
 }
}
""" % (self.rwan, lo, hi, self.rwan, lo, hi))

    def rebind(self, lo, hi):
        """The router forgets its mappings and makes new ones from another
        port range: the host sees the client arrive from a new port."""
        self.snat(lo, hi)
        self.run("r", "conntrack", "-D", "-p", "udp")


@pytest.fixture
def routed(netns):
    return netns(Routed, "nft", "tc", "conntrack")

class Reader(threading.Thread):
    """Reads a file in 64 KiB pieces, noting when each arrived."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        self.times = []
        self.sha = None
        self.err = None

    def run(self):
        h = hashlib.sha256()
        try:
            with open(self.path, "rb", buffering=0) as f:
                while True:
                    b = f.read(64 * 1024)
                    if not b:
                        break
                    h.update(b)
                    self.times.append(time.monotonic())
            self.sha = h.hexdigest()
        except OSError as e:
            self.err = e

    def first_after(self, t):
        return next((x for x in self.times if x > t), None)


def big_share(workdir, mib):
    share = os.path.join(workdir, "share")
    os.makedirs(share)
    big = os.path.join(share, "big")
    with open(big, "wb") as f:
        f.write(os.urandom(mib * MiB))
    return share, sha256(big)


def slow(routed):
    # slow the host's side so the read is still going when things happen
    routed.run("h", "tc", "qdisc", "add", "dev", "eth0", "root", "tbf",
               "rate", "40mbit", "burst", "64kb", "latency", "200ms")


def rx_bytes(routed):
    import json
    out = routed.run("c", "ip", "-j", "-s", "link", "show", "eth0").stdout
    return json.loads(out)[0]["stats64"]["rx"]["bytes"]


def wait_rx(routed, since, more, t0, limit=30):
    """Seconds from |t0| until the client has received |more| bytes
    beyond |since| (-1: not within |limit|)."""
    while time.monotonic() - t0 < limit:
        if rx_bytes(routed) >= since + more:
            return time.monotonic() - t0
        time.sleep(0.02)
    return -1


def authenticated(h):
    return h.stderr().count(") authenticated")


def test_nat_rebinding_keeps_the_session(routed, workdir, mkmnt):
    share, want = big_share(workdir, 24)
    h = Host(share, ip=routed.haddr, wrap=routed.wrap("h"), extra=["-v"])
    mnt = mkmnt()
    m = None
    try:
        slow(routed)
        m = Mount(h, mnt, extra=["--transport", "quic", "-v"],
                  wrap=routed.wrap("c"))
        assert authenticated(h) == 1
        before = h.stderr()
        assert ":2" in before.split("connecting from", 1)[1].split()[0]
        rd = Reader(os.path.join(mnt, "big"))
        rd.start()
        time.sleep(1.5)
        assert rd.is_alive(), "the read finished before the rebinding"
        routed.rebind(40000, 40999)
        t_rebind = time.monotonic()
        rd.join(120)
        assert not rd.is_alive(), "the read did not finish"
        assert rd.err is None, rd.err
        assert rd.sha == want
        log = h.stderr()
        # the same connection, followed to the new address, named by the
        # client's number
        wan = re.escape(routed.rwan)
        assert re.search(r"client #1 \(%s:2\d+\) is now at %s:4\d+" %
                         (wan, wan), log), log[-3000:]
        assert authenticated(h) == 1, log[-3000:]
        assert "reconnect" not in m.stderr(), m.stderr()[-3000:]
        first = rd.first_after(t_rebind)
        m.close()
        m = None
        # and every later line about it names the new address
        assert wait_for(lambda: "disconnected" in h.stderr(), 10)
        assert re.search(r"client #1 \(%s:4\d+\) disconnected" % wan,
                         h.stderr()), h.stderr()[-3000:]
        print("\nNAT rebinding mid-read: data again %.2f s after the new "
              "mapping" % ((first - t_rebind) if first else -1))
    finally:
        if m:
            m.close()
        h.close()


@pytest.mark.parametrize("transport", ["quic", "tcp"])
def test_outage_resumes_on_the_same_connection(transport, routed, workdir,
                                               mkmnt):
    """The router drops everything for 8 s (longer than the old 6 s idle
    timeout) mid-read; the read completes on the same connection.  The
    delay between the path's return and the next data is printed."""
    share, want = big_share(workdir, 24)
    h = Host(share, ip=routed.haddr, wrap=routed.wrap("h"), extra=["-v"])
    mnt = mkmnt()
    m = None
    try:
        slow(routed)
        m = Mount(h, mnt, extra=["--transport", transport, "--timeout-ms",
                                 "60000", "-v"], wrap=routed.wrap("c"))
        rd = Reader(os.path.join(mnt, "big"))
        rd.start()
        time.sleep(1.5)
        assert rd.is_alive(), "the read finished before the outage"
        routed.run("r", "nft", "-f", "-", input="table ip whcut {\n"
                   " chain cut { type filter hook forward priority -10; "
                   "policy drop; }\n}\n")
        time.sleep(8)
        rx0 = rx_bytes(routed)
        routed.run("r", "nft", "delete", "table", "ip", "whcut")
        t_back = time.monotonic()
        packet = wait_rx(routed, rx0, 1, t_back)
        flowing = wait_rx(routed, rx0, 1 * MiB, t_back)
        rd.join(120)
        assert not rd.is_alive(), "the read did not finish"
        assert rd.err is None, rd.err
        assert rd.sha == want
        assert authenticated(h) == 1, h.stderr()[-3000:]
        assert "reconnect" not in m.stderr(), m.stderr()[-3000:]
        first = rd.first_after(t_back)
        print("\n8 s outage mid-read over %s, after the path returned: "
              "first packet %.2f s, 1 MiB received %.2f s, next read "
              "returned %.2f s" % (transport, packet, flowing,
                                   (first - t_back) if first else -1))
    finally:
        if m:
            m.close()
        h.close()
