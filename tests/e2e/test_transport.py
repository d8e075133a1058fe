"""The two transports: the core operations forced over TLS/TCP, the
automatic fallback to TCP where UDP is dropped, and a read that survives
its link going down for 5 s.

The network tests build two network namespaces joined by a veth pair
(created and removed here, unique names).  Processes enter a namespace
with `nsenter --net`, which keeps the shared mount namespace, so a FUSE
mount made inside is visible to this test."""
import hashlib
import os
import random
import shutil
import subprocess
import threading
import time

import pytest

from conftest import (TOOLS, WH_BIN, Host, Mount, MiB, free_udp_port,
                      netns_name, wait_for)


def get(h, remote, local, cache, *extra, addr=None, wrap=(), timeout=120):
    return subprocess.run([*wrap, WH_BIN, "get", h.code, remote, local,
                           "--peer", addr or h.addr, "--cache-dir", cache,
                           *extra], capture_output=True, text=True,
                          timeout=timeout)


def same_tree(a, b, *exclude):
    x = [arg for name in exclude for arg in ("-x", name)]
    r = subprocess.run(["diff", "-r", "--no-dereference", *x, a, b],
                       capture_output=True)
    return r.returncode == 0


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


# ------------------------------------------------ core operations over TCP

@pytest.mark.parametrize("transport", ["tcp", "quic"])
def test_mount_and_read(transport, tree, hosts, mounts, mkmnt):
    share, _ = tree
    h = hosts(share)
    mnt = mkmnt()
    m = mounts(h, mnt, extra=["--transport", transport, "-v"])
    # the fifo is invisible on purpose, the 5 GiB sparse file too slow
    assert same_tree(share, mnt, "a-fifo", "sparse")
    assert sha256(os.path.join(mnt, "random64")) == \
        sha256(os.path.join(share, "random64"))
    assert "over %s" % transport.upper() in m.stderr()


@pytest.mark.parametrize("transport", ["tcp", "quic"])
def test_get_small_tree(transport, small_share, hosts, workdir):
    h = hosts(small_share)
    out = os.path.join(workdir, "out")
    r = get(h, "", out, os.path.join(workdir, "cache"), "--transport",
            transport)
    assert r.returncode == 0, r.stderr
    assert same_tree(small_share, out)


@pytest.mark.parametrize("transport", ["tcp", "quic"])
def test_wrong_code(transport, small_share, hosts, mkmnt):
    h = hosts(small_share)
    bad = "AAAA-BBBB-CCCC-DDDD" if h.code != "AAAA-BBBB-CCCC-DDDD" \
        else "AAAA-BBBB-CCCC-DDDE"
    mnt = mkmnt()
    r = subprocess.run([WH_BIN, "mount", bad, mnt, "--peer", h.addr,
                        "--transport", transport],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "wrong join code" in r.stderr
    assert not os.path.ismount(mnt)
    assert h.alive()


@pytest.mark.parametrize("case", ["dotdot", "truncated", "oversized",
                                  "garbage", "replytype"])
def test_misbehaving_client_over_tcp(case, small_share, hosts, mounts,
                                     mkmnt):
    """test_hostile's bad requests, over TCP: an error or a closed
    connection for the sender, nothing for a client beside it."""
    h = hosts(small_share)
    mnt = mkmnt()
    mounts(h, mnt, extra=["--transport", "tcp"])
    r = subprocess.run([os.path.join(TOOLS, "wh_probe"), "--peer", h.addr,
                        "--code", h.code, "--case", case, "--transport",
                        "tcp"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    out = r.stdout.strip()
    assert out == "closed" or out.startswith("reply ERROR "), out
    if case == "dotdot":
        assert out == "reply ERROR 22"
    assert h.alive()
    with open(os.path.join(mnt, "hello.txt")) as f:
        assert f.read() == "hello\n"


def test_host_changes_show_over_tcp(small_share, hosts, mounts, mkmnt):
    """INVAL frames travel on the control stream over TCP too."""
    h = hosts(small_share)
    mnt = mkmnt()
    mounts(h, mnt, extra=["--transport", "tcp"])
    st = subprocess.run([WH_BIN, "status"], capture_output=True, text=True)
    assert "%s\t%s, over TLS over TCP" % (mnt, h.addr) in \
        st.stdout.splitlines(), st.stdout
    dst = os.path.join(mnt, "hello.txt")
    with open(dst, "rb") as f:
        assert f.read() == b"hello\n"    # now cached by the kernel
    with open(os.path.join(small_share, "hello.txt"), "w") as f:
        f.write("HELLO\n")               # same size: only INVAL tells
    assert wait_for(lambda: read_or_none(dst) == b"HELLO\n", 5)
    with open(os.path.join(small_share, "created.txt"), "w") as f:
        f.write("new\n")
    assert wait_for(lambda: read_or_none(os.path.join(mnt, "created.txt"))
                    == b"new\n", 5)


def test_host_back_mount_reconnects_over_tcp(small_share, mkmnt, mounts):
    port = free_udp_port()
    h = Host(small_share, port=port)
    mnt = mkmnt()
    m = mounts(h, mnt, extra=["--transport", "tcp"])
    with open(os.path.join(mnt, "hello.txt")) as f:
        assert f.read() == "hello\n"
    h.kill()
    h.close()
    h2 = Host(small_share, code=h.code, port=port)
    try:
        # never read before: it has to come from the new host
        with open(os.path.join(small_share, "data.bin"), "rb") as f:
            want = f.read()
        assert wait_for(lambda: read_or_none(os.path.join(mnt, "data.bin"))
                        == want, 20)
        assert wait_for(lambda: "reconnected to" in m.stderr(), 5)
        assert "over TCP" in m.stderr().split("reconnected to", 1)[1]
    finally:
        m.close()   # while its host is there: it then unmounts cleanly
        h2.close()


def read_or_none(p):
    try:
        with open(p, "rb") as f:
            return f.read()
    except OSError:
        return None


def test_bad_transport_is_a_usage_error(small_share, hosts, workdir):
    h = hosts(small_share)
    r = get(h, "", os.path.join(workdir, "out"), os.path.join(workdir, "c"),
            "--transport", "carrier-pigeon")
    assert r.returncode == 2
    assert "--transport" in r.stderr


def test_tcp_port_taken_host_serves_quic(small_share, hosts, workdir,
                                         mkmnt, mounts):
    """A host told a port whose TCP side is taken still serves QUIC, and
    says that the fallback is unavailable."""
    import socket

    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        h = hosts(small_share, port=port)
        assert "no TCP fallback" in h.stderr()
        mnt = mkmnt()
        mounts(h, mnt, extra=["--transport", "quic"])
        with open(os.path.join(mnt, "hello.txt")) as f:
            assert f.read() == "hello\n"
    finally:
        blocker.close()


def test_tcp_garbage_closes_only_that_connection(small_share, hosts, mounts,
                                                 mkmnt):
    """Bytes that are not TLS on the TCP port, and a client that connects
    and says nothing, hurt nobody else."""
    import socket

    h = hosts(small_share)
    mnt = mkmnt()
    mounts(h, mnt, extra=["--transport", "tcp"])
    idle = socket.create_connection(("127.0.0.1", h.port))
    bad = socket.create_connection(("127.0.0.1", h.port))
    bad.sendall(os.urandom(4096))
    bad.settimeout(10)
    try:
        while bad.recv(4096):
            pass
    except (ConnectionResetError, socket.timeout):
        pass
    bad.close()
    with open(os.path.join(mnt, "hello.txt")) as f:
        assert f.read() == "hello\n"
    idle.close()
    assert h.alive()


# ------------------------------------------------------ network namespaces

def _need_netns():
    if os.geteuid() != 0:
        pytest.skip("network namespace tests need root")
    for tool in ("ip", "nft", "nsenter", "tc"):
        if not shutil.which(tool):
            pytest.skip("network namespace tests need '%s' "
                        "(scripts/deps.sh test)" % tool)


def _run(*cmd):
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


class NetPair:
    """Namespaces HOST and CLIENT joined by a veth pair on a /30."""

    def __init__(self):
        self.hns, self.cns = netns_name("h"), netns_name("c")
        self.hveth, self.cveth = "whvh" + self.hns[-4:], "whvc" + self.hns[-4:]
        net = random.randrange(1, 250)
        self.haddr = "10.231.%d.1" % net
        self.caddr = "10.231.%d.2" % net
        self.made = []
        try:
            for ns in (self.hns, self.cns):
                _run("ip", "netns", "add", ns)
                self.made.append(ns)
                _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "-n", self.hns, "link", "add", self.hveth, "type",
                 "veth", "peer", "name", self.cveth, "netns", self.cns)
            _run("ip", "-n", self.hns, "addr", "add", self.haddr + "/30",
                 "dev", self.hveth)
            _run("ip", "-n", self.cns, "addr", "add", self.caddr + "/30",
                 "dev", self.cveth)
            _run("ip", "-n", self.hns, "link", "set", self.hveth, "up")
            _run("ip", "-n", self.cns, "link", "set", self.cveth, "up")
        except Exception:
            self.close()
            raise

    def wrap(self, ns):
        return ["nsenter", "--net=/run/netns/" + ns]

    def host_cmd(self, *cmd):
        _run(*self.wrap(self.hns), *cmd)

    def block_udp(self, how="drop"):
        """Drop (or reject, with an ICMP error) UDP into the host."""
        rule = "drop" if how == "drop" else "reject"
        self.host_cmd("nft", "add", "table", "inet", "whtest")
        self.host_cmd("nft", "add", "chain", "inet", "whtest", "input",
                      "{ type filter hook input priority 0 ; }")
        self.host_cmd("nft", "add", "rule", "inet", "whtest", "input",
                      "meta", "l4proto", "udp", rule)

    def close(self):
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.made = []


@pytest.fixture
def netpair():
    _need_netns()
    try:
        p = NetPair()
    except (subprocess.CalledProcessError, OSError) as e:
        pytest.skip("cannot build network namespaces here: %s" % e)
    yield p
    p.close()


@pytest.fixture
def nshosts():
    """Hosts inside a pair's host namespace, on its veth address."""
    made = []

    def make(pair, share, **kw):
        h = Host(share, ip=pair.haddr, wrap=pair.wrap(pair.hns), **kw)
        made.append(h)
        return h
    yield make
    for h in made:
        h.close()


def small_tree(workdir):
    share = os.path.join(workdir, "share")
    os.makedirs(os.path.join(share, "sub"))
    with open(os.path.join(share, "sub", "data"), "wb") as f:
        f.write(os.urandom(3 * MiB))
    with open(os.path.join(share, "hello.txt"), "w") as f:
        f.write("hello\n")
    os.symlink("sub/data", os.path.join(share, "link"))
    return share


@pytest.mark.parametrize("how", ["drop", "reject"])
def test_udp_blocked_get_falls_back_to_tcp(how, netpair, nshosts, workdir):
    share = small_tree(workdir)
    h = nshosts(netpair, share)
    netpair.block_udp(how)
    out = os.path.join(workdir, "out")
    t0 = time.monotonic()
    r = get(h, "", out, os.path.join(workdir, "cache"), "-v",
            wrap=netpair.wrap(netpair.cns), timeout=60)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert "over TCP" in r.stderr
    assert same_tree(share, out)
    print("\nUDP %s: get over TCP (auto) took %.2f s" % (how, took))


def test_udp_dropped_mount_falls_back_to_tcp(netpair, nshosts, workdir,
                                             mkmnt):
    share = small_tree(workdir)
    h = nshosts(netpair, share)
    netpair.block_udp("drop")
    mnt = mkmnt()
    t0 = time.monotonic()
    m = Mount(h, mnt, extra=["-v"], wrap=netpair.wrap(netpair.cns))
    try:
        took = time.monotonic() - t0
        assert same_tree(share, mnt)
        assert "over TCP" in m.stderr()
        print("\nUDP dropped: mount over TCP (auto) took %.2f s" % took)
    finally:
        m.close()


def test_udp_dropped_host_back_mount_reconnects(netpair, nshosts, workdir,
                                                mkmnt):
    """UDP dropped: a mount that had to use TCP reconnects over TCP when
    its host comes back, trying TCP at once (the time is printed)."""
    share = small_tree(workdir)
    port = random.randrange(20000, 60000)  # the namespace is empty
    h = nshosts(netpair, share, port=port)
    netpair.block_udp("drop")
    mnt = mkmnt()
    m = Mount(h, mnt, extra=["-v"], wrap=netpair.wrap(netpair.cns))
    try:
        assert "over TCP" in m.stderr()
        h.kill()
        h.close()
        h2 = nshosts(netpair, share, code=h.code, port=port)
        t0 = time.monotonic()
        assert wait_for(lambda: "reconnected to" in m.stderr(), 30), \
            m.stderr()[-2000:]
        took = time.monotonic() - t0
        log = m.stderr()
        assert "over TCP" in log.split("reconnected to", 1)[1]
        assert "trying TCP at once" in log
        with open(os.path.join(share, "sub", "data"), "rb") as f:
            want = f.read()
        with open(os.path.join(mnt, "sub", "data"), "rb") as f:
            assert f.read() == want
        print("\nUDP dropped: host back, mount reconnected over TCP %.2f s "
              "later" % took)
    finally:
        m.close()
    h2.close()


@pytest.mark.parametrize("transport", ["quic", "tcp"])
def test_link_down_mid_read(transport, netpair, nshosts, workdir, mkmnt):
    """The link goes down for 5 s during a long read, then comes back: the
    read completes with the right bytes, on the same connection."""
    share = os.path.join(workdir, "share")
    os.makedirs(share)
    big = os.path.join(share, "big")
    with open(big, "wb") as f:
        f.write(os.urandom(24 * MiB))
    want = sha256(big)
    h = nshosts(netpair, share)
    # slow the host's side so the read is still going when the link drops
    netpair.host_cmd("tc", "qdisc", "add", "dev", netpair.hveth, "root",
                     "tbf", "rate", "40mbit", "burst", "64kb", "latency",
                     "200ms")
    mnt = mkmnt()
    m = Mount(h, mnt, extra=["--transport", transport, "--timeout-ms",
                             "60000", "-v"], wrap=netpair.wrap(netpair.cns))
    try:
        result = {}

        def reader():
            t0 = time.monotonic()
            try:
                result["sha"] = sha256(os.path.join(mnt, "big"))
            except OSError as e:
                result["err"] = e
            result["took"] = time.monotonic() - t0

        t = threading.Thread(target=reader)
        t.start()
        time.sleep(1.5)
        assert t.is_alive(), "the read finished before the link went down"
        netpair.host_cmd("ip", "link", "set", netpair.hveth, "down")
        time.sleep(5)
        netpair.host_cmd("ip", "link", "set", netpair.hveth, "up")
        t.join(120)
        assert not t.is_alive(), "the read did not finish"
        assert "err" not in result, result.get("err")
        assert result["sha"] == want
        # the connection outlived the outage (the idle timeout is 30 s)
        assert "reconnect" not in m.stderr(), m.stderr()[-2000:]
        print("\nlink down 5 s mid-read over %s: 24 MiB read in %.2f s"
              % (transport, result["took"]))
        print(m.stderr()[-1500:])
    finally:
        m.close()
