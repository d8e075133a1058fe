"""Join by code alone through a signal server, in network namespaces this
file builds and removes: one LAN segment, a host behind a NAT, two peers
behind two NATs (hole punching), a signal server restarted between the
host's registration and the client's join, hostile datagrams, a flood from
one address, codes that are unknown or expired.

Topology (203.0.113.0/24 is the "internet", a bridge in the pub namespace):

    sig 203.0.113.10        cp 203.0.113.20 (a client on the public side)
        |                    |
    ----+------ pub (bridge) +--------------+
        |                                   |
    ra 203.0.113.1 (NAT)                rb 203.0.113.2 (NAT)
        | 10.1.0.1 (bridge)                 | 10.2.0.1
    ha 10.1.0.2 (host), ca 10.1.0.3         cb 10.2.0.2 (a client)

Processes run under `nsenter --net=...`, which keeps the mount namespace,
so a FUSE mount made inside a namespace is visible to this test."""
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import (WH_BIN, Netns, drop_log, netns_name, netns_skip_reason,
                      track, unmount, wait_for)

SIG_IP = "203.0.113.10"
SIG_PORT = 7700
SIG = "%s:%d" % (SIG_IP, SIG_PORT)


def _why_skip():
    why = netns_skip_reason("nft")
    if why:
        return why
    probe = netns_name("sprobe")
    r = subprocess.run(["ip", "netns", "add", probe],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return "cannot create a network namespace: " + r.stderr.strip()
    subprocess.run(["ip", "netns", "del", probe])
    return None


_skip = _why_skip()
pytestmark = pytest.mark.skipif(_skip is not None, reason=_skip or "")


# A home router: masquerade out of "wan", and a stateful firewall that drops
# what nobody inside asked for.  The drop matters for hole punching on a
# Linux router: an unsolicited datagram it accepted for itself would leave a
# conntrack entry on the very (public port, peer) tuple that the inside
# host's later punch needs, and masquerade would then pick another port.
# Dropped before conntrack confirms it, the datagram leaves no trace.
ROUTER_NFT = """
table ip nat {
 chain post {
  type nat hook postrouting priority 100;
  oifname "wan" masquerade
 }
}
table ip filter {
 chain input {
  type filter hook input priority 0; policy accept;
  iifname "wan" ct state established,related accept
  iifname "wan" drop
 }
 chain forward {
  type filter hook forward priority 0; policy accept;
  iifname "wan" ct state established,related accept
  iifname "wan" drop
 }
}
"""


class Net(Netns):
    """The namespaces above, named uniquely for this run."""

    PREFIX = "whs"
    ROLES = ("pub", "sig", "cp", "ra", "ha", "ca", "rb", "cb")

    def build(self):
        self.ip("pub", "link", "add", "br0", "type", "bridge")
        self.ip("pub", "link", "set", "br0", "up")
        for role, ifname in (("sig", "eth0"), ("cp", "eth0"), ("ra", "wan"),
                             ("rb", "wan")):
            self.veth("pub", "p-" + role, role, ifname)
            self.ip("pub", "link", "set", "p-" + role, "master", "br0")
            self.ip("pub", "link", "set", "p-" + role, "up")
        self.addr("sig", "eth0", SIG_IP + "/24")
        self.addr("cp", "eth0", "203.0.113.20/24")
        self.addr("ra", "wan", "203.0.113.1/24")
        self.addr("rb", "wan", "203.0.113.2/24")
        # LAN A: a bridge in ra with the host and a client on it
        self.ip("ra", "link", "add", "lan", "type", "bridge")
        for role in ("ha", "ca"):
            self.veth("ra", "l-" + role, role, "eth0")
            self.ip("ra", "link", "set", "l-" + role, "master", "lan")
            self.ip("ra", "link", "set", "l-" + role, "up")
        self.addr("ra", "lan", "10.1.0.1/24")
        self.addr("ha", "eth0", "10.1.0.2/24", "10.1.0.1")
        self.addr("ca", "eth0", "10.1.0.3/24", "10.1.0.1")
        # LAN B: one client
        self.veth("rb", "lan", "cb", "eth0")
        self.addr("rb", "lan", "10.2.0.1/24")
        self.addr("cb", "eth0", "10.2.0.2/24", "10.2.0.1")
        for r in ("ra", "rb"):
            self.run(r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            self.run(r, "nft", "-f", "-", input=ROUTER_NFT)


class Proc:
    """A wormhole process in a namespace, its stderr in a file."""

    def __init__(self, net, role, args, env=None, lines=()):
        self.log = tempfile.NamedTemporaryFile(prefix="wh-sig-", suffix=".log",
                                               delete=False)
        self.proc = self.tracked = None
        try:
            self._start(net, role, args, env, lines)
        except BaseException:
            # the procs fixture never saw it: remove the log here
            self.close()
            raise

    def _start(self, net, role, args, env, lines):
        self.proc = net.popen(role, [WH_BIN] + list(args), stdout=subprocess.PIPE,
                              stderr=self.log, text=True, env=env)
        self.tracked = track("%s in %s" % (args[0], role), self.proc,
                             self.log.name)
        self.out = {}
        end = time.monotonic() + 10
        for key in lines:
            while key not in self.out and time.monotonic() < end:
                line = self.proc.stdout.readline()
                if not line:
                    break
                k, _, v = line.partition(": ")
                self.out[k] = v.strip()
            if key not in self.out:
                self.stop()
                raise RuntimeError("%s did not start: %s" % (args[0], self.stderr()))

    def stderr(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        return self.proc.returncode

    def close(self):
        """Stop it and remove its log (its tail stays for the report)."""
        self.stop()
        drop_log(self.tracked, self.log)


@pytest.fixture(scope="module")
def net():
    n = Net()
    try:
        yield n
    finally:
        n.close()


@pytest.fixture
def procs():
    made = []

    def stop_all():
        for p in reversed(made):
            p.close()
    yield made
    stop_all()


@pytest.fixture
def work():
    d = tempfile.mkdtemp(prefix="wh-sig-")
    share = os.path.join(d, "share")
    os.makedirs(os.path.join(share, "sub"))
    with open(os.path.join(share, "hello.txt"), "w") as f:
        f.write("hello through the wormhole\n")
    with open(os.path.join(share, "sub", "big"), "wb") as f:
        f.write(os.urandom(3 * 1024 * 1024 + 17))
    yield d
    for sub in os.listdir(d):
        unmount(os.path.join(d, sub))
    shutil.rmtree(d, ignore_errors=True)


def start_signal(net, procs, work, extra=()):
    p = Proc(net, "sig", ["signal", "--listen", "0.0.0.0:%d" % SIG_PORT, "--db",
                          os.path.join(work, "signal.db")] + list(extra),
             lines=("listening",))
    procs.append(p)
    return p


def start_host(net, procs, work, role="ha", extra=()):
    p = Proc(net, role, ["host", os.path.join(work, "share"), "--listen",
                         "0.0.0.0:0", "--signal", SIG] + list(extra),
             lines=("join code", "listening"))
    procs.append(p)
    assert wait_for(lambda: "registered at" in p.stderr(), 10), p.stderr()
    return p


def get(net, role, code, remote, local, extra=(), env=None, timeout=60):
    args = net.wrap(role) + [WH_BIN, "get", code, remote, local] + list(extra)
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          env=env)


def same_file(a, b):
    with open(a, "rb") as f, open(b, "rb") as g:
        return f.read() == g.read()


def check_copy(work, local):
    assert same_file(os.path.join(work, "share", "hello.txt"),
                     os.path.join(local, "hello.txt"))
    assert same_file(os.path.join(work, "share", "sub", "big"),
                     os.path.join(local, "sub", "big"))


# ------------------------------------------------------------------ tests


def test_lan_join_by_code_alone(net, procs, work):
    """(1) host and client on one LAN segment: get and mount by code alone,
    the signal server named by the environment and by the config file."""
    start_signal(net, procs, work)
    h = start_host(net, procs, work)
    code = h.out["join code"]
    env = dict(os.environ, WORMHOLE_SIGNAL=SIG)
    out = os.path.join(work, "copy")
    r = get(net, "ca", code, ".", out, env=env)
    assert r.returncode == 0, r.stderr
    check_copy(work, out)

    cfg = os.path.join(work, "cfg")
    os.makedirs(os.path.join(cfg, "wormhole"))
    with open(os.path.join(cfg, "wormhole", "config"), "w") as f:
        f.write("# the rendezvous server\nsignal = %s\n" % SIG)
    env = dict(os.environ, XDG_CONFIG_HOME=cfg)
    env.pop("WORMHOLE_SIGNAL", None)
    mnt = os.path.join(work, "mnt")
    os.mkdir(mnt)
    m = net.popen("ca", [WH_BIN, "mount", code, mnt, "--foreground"], env=env,
                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: os.path.ismount(mnt) or m.poll() is not None, 20)
        assert os.path.ismount(mnt), m.stderr.read() if m.poll() is not None else ""
        with open(os.path.join(mnt, "hello.txt")) as f:
            assert f.read() == "hello through the wormhole\n"
        assert same_file(os.path.join(mnt, "sub", "big"),
                         os.path.join(work, "share", "sub", "big"))
    finally:
        unmount(mnt)
        try:
            m.wait(10)
        except subprocess.TimeoutExpired:
            m.kill()
            m.wait()
    assert h.alive()


def test_host_behind_nat_client_public(net, procs, work):
    """(2) the host behind a NAT, the client on the public side."""
    start_signal(net, procs, work)
    h = start_host(net, procs, work)
    out = os.path.join(work, "copy")
    r = get(net, "cp", h.out["join code"], ".", out, extra=["--signal", SIG, "-v"])
    assert r.returncode == 0, r.stderr
    check_copy(work, out)
    # the path is the host's public (NAT) address, opened by its punch
    assert "a path to the host: 203.0.113.1:" in r.stderr, r.stderr


def test_both_behind_nats_hole_punching(net, procs, work):
    """(3) host and client behind two different masquerading NATs: a direct
    connection by simultaneous hole punching."""
    start_signal(net, procs, work)
    h = start_host(net, procs, work)
    out = os.path.join(work, "copy")
    r = get(net, "cb", h.out["join code"], ".", out, extra=["--signal", SIG, "-v"])
    assert r.returncode == 0, r.stderr
    check_copy(work, out)
    assert "a path to the host: 203.0.113.1:" in r.stderr, r.stderr
    log = h.stderr()
    # the host saw the client's QUIC connection come straight from NAT B,
    # from the very mapping the signal server reflected: the masquerade
    # maps endpoint-independently (same public port to every destination)
    joined = [l.rsplit(" ", 2)[-2].rstrip(":") for l in log.splitlines()
              if "a peer is joining from" in l]
    conns = [l.split("connecting from ")[1].split()[0] for l in log.splitlines()
             if "connecting from" in l]
    assert joined and conns, log
    assert joined[-1].startswith("203.0.113.2:"), log
    assert conns[-1] == joined[-1], log


def test_dual_stack_host(net, procs, work):
    """A host on a wildcard IPv6 socket (dual-stack) reaches an IPv4 signal
    server and IPv4 clients through its v4-mapped addresses."""
    start_signal(net, procs, work)
    h = start_host(net, procs, work, extra=["--listen", "[::]:0"])
    assert h.out["listening"].startswith("[::]:")
    out = os.path.join(work, "copy")
    r = get(net, "cb", h.out["join code"], ".", out, extra=["--signal", SIG])
    assert r.returncode == 0, r.stderr
    check_copy(work, out)


def test_signal_restart_keeps_rooms(net, procs, work):
    """(5) the signal server restarts between the host's registration and
    the client's join: the room comes back from SQLite."""
    s = start_signal(net, procs, work)
    h = start_host(net, procs, work)
    assert s.stop() == 0
    procs.remove(s)
    # the database holds the room, never the code
    code = h.out["join code"]
    with open(os.path.join(work, "signal.db"), "rb") as f:
        db = f.read()
    for spelling in (code, code.replace("-", ""), code.lower()):
        assert spelling.encode() not in db
    start_signal(net, procs, work)
    out = os.path.join(work, "copy")
    r = get(net, "cb", h.out["join code"], ".", out, extra=["--signal", SIG])
    assert r.returncode == 0, r.stderr
    check_copy(work, out)
    assert "restored 1 room" in procs[-1].stderr()


def test_host_restart_mount_reresolves(net, procs, work):
    """A mount made by code alone comes back after its host restarts on
    another port: the reconnection asks the signal server again."""
    start_signal(net, procs, work)
    h = start_host(net, procs, work)
    code = h.out["join code"]
    mnt = os.path.join(work, "mnt")
    os.mkdir(mnt)
    m = net.popen("cb", [WH_BIN, "mount", code, mnt, "--foreground",
                         "--signal", SIG], stdout=subprocess.DEVNULL,
                  stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: os.path.ismount(mnt) or m.poll() is not None, 20)
        assert os.path.ismount(mnt)
        assert os.listdir(mnt)
        h.stop()
        procs.remove(h)
        h2 = start_host(net, procs, work, extra=["--code", code])
        assert h2.out["listening"] != h.out["listening"]
        # the host's old room was removed at its exit; the new one is found
        ok = wait_for(lambda: _reads(os.path.join(mnt, "hello.txt")), 40, 0.5)
        assert ok, h2.stderr()
    finally:
        unmount(mnt)
        try:
            m.wait(10)
        except subprocess.TimeoutExpired:
            m.kill()
            m.wait()


def _reads(path):
    try:
        with open(path) as f:
            return f.read() == "hello through the wormhole\n"
    except OSError:
        return False


def test_unknown_and_expired_codes(net, procs, work):
    start_signal(net, procs, work, extra=["--ttl", "10"])
    r = get(net, "cp", "AAAA-BBBB-CCCC-DDDD", ".", os.path.join(work, "x"),
            extra=["--signal", SIG])
    assert r.returncode == 1
    assert "no host is registered for this code" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    # a host that dies without a word: its room expires by itself
    h = start_host(net, procs, work)
    code = h.out["join code"]
    h.stop(signal.SIGKILL)
    time.sleep(11)
    r = get(net, "cp", code, ".", os.path.join(work, "y"), extra=["--signal", SIG])
    assert r.returncode == 1
    assert "no host is registered for this code" in r.stderr, r.stderr
    # a host that stops cleanly removes its room at once
    h = start_host(net, procs, work)
    code = h.out["join code"]
    h.stop()
    r = get(net, "cp", code, ".", os.path.join(work, "z"), extra=["--signal", SIG])
    assert r.returncode == 1
    assert "no host is registered for this code" in r.stderr, r.stderr


def test_doctor_checks_the_signal_server(net, procs, work):
    start_signal(net, procs, work)
    env = dict(os.environ, WORMHOLE_SIGNAL=SIG)
    r = subprocess.run(net.wrap("cb") + [WH_BIN, "doctor"],
                       capture_output=True, text=True, env=env, timeout=30)
    assert "ok      the signal server %s answers" % SIG in r.stdout, r.stdout
    env["WORMHOLE_SIGNAL"] = SIG_IP + ":9"
    r = subprocess.run(net.wrap("cb") + [WH_BIN, "doctor"],
                       capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 1
    assert "PROBLEM the signal server %s:9 answers" % SIG_IP in r.stdout


def test_room_count_is_bounded(net, procs, work):
    start_signal(net, procs, work, extra=["--max-rooms", "1"])
    start_host(net, procs, work)
    p = Proc(net, "ha", ["host", os.path.join(work, "share"), "--listen",
                         "0.0.0.0:0", "--signal", SIG],
             lines=("join code", "listening"))
    procs.append(p)
    assert wait_for(lambda: "too many rooms" in p.stderr(), 10), p.stderr()
    r = get(net, "cp", p.out["join code"], ".", os.path.join(work, "x"),
            extra=["--signal", SIG])
    assert r.returncode == 1
    assert "no host is registered" in r.stderr


def test_no_signal_server_is_a_clear_usage_error(tmp_path):
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path), HOME=str(tmp_path))
    env.pop("WORMHOLE_SIGNAL", None)
    for cmd in (["get", "AAAA-BBBB-CCCC-DDDD", "x"],
                ["mount", "AAAA-BBBB-CCCC-DDDD", str(tmp_path)]):
        r = subprocess.run([WH_BIN] + cmd, capture_output=True, text=True,
                           env=env, timeout=10)
        assert r.returncode == 2
        assert "--peer" in r.stderr and "--signal" in r.stderr
        assert len(r.stderr.strip().splitlines()) <= 2


def test_silent_signal_server(net, procs, work):
    """Nothing listens at the signal address: a clear error, not a hang."""
    r = get(net, "cp", "AAAA-BBBB-CCCC-DDDD", ".", os.path.join(work, "x"),
            extra=["--signal", "203.0.113.10:9"])
    assert r.returncode == 1
    assert "did not answer" in r.stderr, r.stderr


def udp_script(lines):
    return "import socket, os, time\n" + "\n".join(lines) + "\n"


def test_bad_and_oversized_datagrams(net, procs, work):
    s = start_signal(net, procs, work)
    h = start_host(net, procs, work)
    script = udp_script([
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
        "a = ('%s', %d)" % (SIG_IP, SIG_PORT),
        "s.sendto(b'\\x00WS\\x01\\x04' + b'\\xff' * 3, a)",      # truncated
        "s.sendto(b'\\x00WS\\x01\\x63', a)",                    # unknown type
        "s.sendto(b'\\x00WS\\x01\\x04' + os.urandom(60000), a)",  # oversized
        "s.sendto(os.urandom(700), a)",                        # noise
        "s.sendto(b'', a)",
        "s.settimeout(1)",
        "try:\n    s.recvfrom(2048); print('answered')\nexcept socket.timeout:\n"
        "    print('silent')",
    ])
    r = net.run("cp", "python3", "-c", script)
    assert r.stdout.strip() == "silent"  # malformed datagrams get no answer
    assert s.alive()
    assert "dropped a malformed datagram" in s.stderr()
    # the same address and the host still work
    out = os.path.join(work, "copy")
    r = get(net, "cp", h.out["join code"], ".", out, extra=["--signal", SIG])
    assert r.returncode == 0, r.stderr
    check_copy(work, out)


def test_flood_is_rate_limited_others_unaffected(net, procs, work):
    s = start_signal(net, procs, work)
    h = start_host(net, procs, work)
    # cp floods JOINs for unknown rooms for 6 s and counts the answers
    script = udp_script([
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
        "s.setblocking(False)",
        "a = ('%s', %d)" % (SIG_IP, SIG_PORT),
        "t0 = time.monotonic()",
        "sent = noroom = rate = 0",
        "while time.monotonic() < t0 + 6:",
        "    for i in range(50):",
        "        try:",
        "            s.sendto(b'\\x00WS\\x01\\x04' + os.urandom(24) + b'\\x00', a)",
        "            sent += 1",
        "        except BlockingIOError:",
        "            pass",
        "    while True:",
        "        try:",
        "            d, _ = s.recvfrom(2048)",
        "        except BlockingIOError:",
        "            break",
        "        if d[4] == 7 and d[-1] == 4:",
        "            rate += 1",
        "        elif d[4] == 7 and d[-1] == 1:",
        "            noroom += 1",
        "    time.sleep(0.005)",
        "time.sleep(0.5)",
        "while True:",
        "    try:",
        "        d, _ = s.recvfrom(2048)",
        "    except BlockingIOError:",
        "        break",
        "    rate += d[4] == 7 and d[-1] == 4",
        "    noroom += d[4] == 7 and d[-1] == 1",
        "print(sent, noroom, rate, time.monotonic() - t0)",
    ])
    flood = net.popen("cp", ["python3", "-c", script], stdout=subprocess.PIPE,
                      text=True)
    try:
        time.sleep(1)
        # a join from another address goes through during the flood
        out = os.path.join(work, "copy")
        r = get(net, "cb", h.out["join code"], ".", out, extra=["--signal", SIG])
        assert r.returncode == 0, r.stderr
        check_copy(work, out)
        assert flood.poll() is None  # it really ran during the flood
    finally:
        stdout, _ = flood.communicate(timeout=30)
    sent, noroom, rate = map(int, stdout.split()[:3])
    secs = float(stdout.split()[3])
    assert sent > 2000
    # the server answered what the bucket allows (burst 40, 20 per
    # second), not what was sent; over the rate, one RATE a second at most
    assert 1 <= noroom <= 40 + 20 * secs + 5, stdout
    assert 1 <= rate <= secs + 2, stdout
    assert s.alive()
