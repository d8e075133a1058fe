"""A hand-made client that misbehaves gets errors (or loses its own
connection) while the host keeps serving a well-behaved client."""
import contextlib
import os
import subprocess
import time

import pytest

from conftest import MiB, TOOLS, get, sha256

CASES = ["dotdot", "absolute", "longname", "truncated", "oversized",
         "garbage", "replytype"]


def probe(h, case):
    r = subprocess.run([os.path.join(TOOLS, "wh_probe"), "--peer", h.addr,
                        "--code", h.code, "--case", case],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_probe_baseline(small_share, hosts):
    h = hosts(small_share)
    assert probe(h, "ok") == "reply GETATTR_REPLY"


@pytest.mark.parametrize("case", CASES)
def test_misbehaving_client(case, tree, hosts, mounts, mkmnt):
    share, _ = tree
    h = hosts(share)
    mnt = mkmnt()
    mounts(h, mnt)
    out = probe(h, case)
    assert out == "closed" or out.startswith("reply ERROR "), out
    if case in ("dotdot", "absolute", "longname"):
        # a bad path is an error reply, not a reason to drop the client
        assert out == "reply ERROR 22"
    assert h.alive()
    # the well-behaved client did not notice
    with open(os.path.join(mnt, "one"), "rb") as f:
        assert f.read() == b"x"
    assert probe(h, "ok") == "reply GETATTR_REPLY"


def test_wrong_code_probe(small_share, hosts):
    h = hosts(small_share)
    r = subprocess.run([os.path.join(TOOLS, "wh_probe"), "--peer", h.addr,
                        "--code", "AAAA-BBBB-CCCC-DDDD", "--case", "ok"],
                       capture_output=True, text=True, timeout=30)
    if h.code != "AAAA-BBBB-CCCC-DDDD":
        assert r.stdout.strip() == "auth-failed"
    assert h.alive()


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0


def socket_port(pid, transport):
    """The local port of process |pid|'s socket to the host."""
    out = subprocess.run(["ss", "-Hnap", "-u" if transport == "quic" else "-t"],
                         capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if "pid=%d," % pid in line:
            return int(line.split()[3].rsplit(":", 1)[1])
    raise AssertionError("no socket of pid %d in: %s" % (pid, out))


@contextlib.contextmanager
def hoarders(h, transport, n, count):
    """|n| clients that each ask for |count| 1 MiB READs and then take
    none of the replies: every packet the host sends them is dropped."""
    table = "wh_hoard_%d" % os.getpid()
    subprocess.run(["nft", "add", "table", "inet", table], check=True)
    probes = []
    try:
        subprocess.run(["nft", "add", "chain", "inet", table, "out",
                        "{ type filter hook output priority 0; }"], check=True)
        for _ in range(n):
            p = subprocess.Popen([os.path.join(TOOLS, "wh_probe"), "--peer", h.addr,
                                  "--code", h.code, "--case", "hoard",
                                  "--path", "random64", "--count", str(count),
                                  "--wrap", "64", "--transport", transport],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True)
            probes.append(p)
            assert p.stdout.readline().strip() == "ready"
            port = socket_port(p.pid, transport)
            subprocess.run(["nft", "add", "rule", "inet", table, "out", "ip",
                            "daddr", "127.0.0.1", "udp" if transport == "quic"
                            else "tcp", "dport", str(port), "drop"], check=True)
            p.stdin.write("go\n")
            p.stdin.flush()
            assert p.stdout.readline().strip() == "sent"
        yield probes
    finally:
        for p in probes:
            p.kill()
            p.wait()
        subprocess.run(["nft", "delete", "table", "inet", table])


@pytest.mark.parametrize("transport", ["quic", "tcp"])
def test_clients_that_take_nothing_cannot_swell_the_host(transport, tree, hosts,
                                                          workdir, monkeypatch):
    """Four clients each ask for 512 MiB of READs and take none of the
    replies (the path back to them is cut): the host holds at most a
    bounded share of them, says why it stops serving them, and still
    serves a well-behaved client in full."""
    share, _ = tree
    if "ASAN_OPTIONS" in os.environ:
        # freed memory would stay in ASan's quarantine, counted in RSS
        monkeypatch.setenv("ASAN_OPTIONS", os.environ["ASAN_OPTIONS"] +
                           ":quarantine_size_mb=1")
    h = hosts(share)
    base = rss_mib(h.proc.pid)
    with hoarders(h, transport, 4, 512):
        # the host serves what the budget allows at once; give it time
        peak, last = 0, -1
        for _ in range(40):
            time.sleep(0.25)
            peak = max(peak, rss_mib(h.proc.pid))
            if peak == last:
                break
            last = peak
        r = get(h, "random64", os.path.join(workdir, "got"),
                os.path.join(workdir, "cache"), "--transport", transport)
        assert r["bytes"] == 64 * MiB
        assert sha256(os.path.join(workdir, "got")) == \
            sha256(os.path.join(share, "random64"))
        peak = max(peak, rss_mib(h.proc.pid))
        assert h.alive()
        # 4 x 512 MiB asked for; held without the budget: 4 x 128 MiB (the
        # streams each connection may have open).  ThreadSanitizer's own
        # memory grows with the program's and is never given back.
        if "TSAN_OPTIONS" not in os.environ:
            assert peak - base < 200, "host grew from %.0f to %.0f MiB" % (
                base, peak)
        assert "its further requests wait" in h.stderr()


@pytest.mark.parametrize("transport", ["quic", "tcp"])
def test_clients_that_take_nothing_are_let_go(transport, tree, hosts,
                                               monkeypatch):
    """Two clients ask for much and take nothing, their path back cut,
    while they go on sending (keep-alives, retransmissions): once nothing
    the host sent them was acknowledged for an idle timeout (shortened
    here) the host drops them and what they held, and says why."""
    share, _ = tree
    monkeypatch.setenv("WH_HOST_IDLE_MS", "2000")
    h = hosts(share)
    with hoarders(h, transport, 2, 64) as probes:
        deadline = time.monotonic() + 30
        while h.stderr().count(" lost: ") < 2 and \
                time.monotonic() < deadline:
            time.sleep(0.2)
        log = h.stderr()
        assert log.count(" lost: ") == 2, log
        # the clients did not give up by themselves: the host let them go
        assert all(p.poll() is None for p in probes)
        if transport == "quic":
            assert log.count("acknowledged for 2.0 s") == 2, log
        assert h.alive()


def test_manifest_being_computed_takes_no_worker(small_share, hosts):
    """Whole-manifest requests (MANIFEST, for clients without streamed
    manifests) of a big file not hashed yet, more of them than the host
    has workers, are all answered once it is hashed, and a request sent
    after them is answered first: the hashing holds none of the workers
    that serve everyone's requests."""
    with open(os.path.join(small_share, "big.sparse"), "wb") as f:
        f.truncate(1024 * MiB)
    h = hosts(small_share)
    r = subprocess.run([os.path.join(TOOLS, "wh_probe"), "--peer", h.addr,
                        "--code", h.code, "--case", "busy",
                        "--path", "big.sparse", "--count", "6"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["order", "GETATTR_REPLY"] + \
        ["MANIFEST_REPLY"] * 6, r.stdout
    assert h.alive()


def test_manifests_past_the_hashers_queue_take_no_worker(small_share, hosts,
                                                          workdir, monkeypatch):
    """More whole-manifest requests of distinct big files never hashed
    than the host queues for its hasher threads (64; the hashers are held
    here until the test lets them go, WH_MCACHE_TEST_HOLD), over four
    connections (one would have most of them wait for its reply budget):
    those past the queue wait for room in it, not hashed in the workers,
    so a request sent after them is answered first, and every one is
    answered once the hashers go on."""
    for i in range(70):
        with open(os.path.join(small_share, "big.%d" % i), "wb") as f:
            f.truncate(9 * MiB)  # over the size hashed in the caller
    flag = os.path.join(workdir, "hashers-go")
    monkeypatch.setenv("WH_MCACHE_TEST_HOLD", flag)
    h = hosts(small_share)
    p = subprocess.Popen([os.path.join(TOOLS, "wh_probe"), "--peer", h.addr,
                          "--code", h.code, "--case", "busy", "--path", "big",
                          "--count", "70", "--wrap", "70", "--conns", "4"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)  # the requests are in; the queue is full
        open(flag, "w").close()
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    assert out.split() == ["order", "GETATTR_REPLY"] + \
        ["MANIFEST_REPLY"] * 70, out
    assert h.alive()


def test_many_requests_of_one_client_do_not_delay_another(tree, hosts):
    """One client has 64 reads queued at the host, of a file that is not in
    the page cache, when another client sends one request: the host's
    workers take the connections in turn, so the second is answered
    before most of the reads (in arrival order it came after all of
    them: 59-60 of the 64 before it)."""
    share, _ = tree
    h = hosts(share)
    with open(os.path.join(share, "random64"), "rb") as f:
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    r = subprocess.run([os.path.join(TOOLS, "wh_probe"), "--peer", h.addr,
                        "--code", h.code, "--case", "fair",
                        "--path", "random64", "--count", "64", "--wrap", "64"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    words = r.stdout.split()
    assert words[0] == "before" and words[2:] == ["of", "64"], r.stdout
    assert int(words[1]) <= 16, r.stdout
    assert h.alive()


def silent(h, count, transport, seconds):
    return subprocess.Popen([os.path.join(TOOLS, "wh_silent"), "--peer", h.addr,
                             "--count", str(count), "--transport", transport,
                             "--seconds", str(seconds)],
                            stdout=subprocess.PIPE, text=True)


@pytest.mark.parametrize("transport", ["quic", "tcp"])
def test_connection_that_never_authenticates_is_closed(transport, small_share,
                                                       hosts, monkeypatch):
    """A connection that finishes its TLS handshake and never says HELLO
    (its keep-alives would keep it up for ever) is closed at the
    authentication deadline (shortened here)."""
    monkeypatch.setenv("WH_HOST_AUTH_MS", "1500")
    h = hosts(small_share)
    p = silent(h, 3, transport, 30)
    try:
        out, _ = p.communicate(timeout=60)
    finally:
        p.kill()
    assert out.split("\n")[:2] == ["up 3", "closed 3"], out
    assert "not authenticated in time" in h.stderr()
    assert h.alive()


@pytest.mark.parametrize("transport", ["quic", "tcp"])
def test_silent_connections_cannot_lock_out_the_code(transport, small_share,
                                                     hosts, workdir):
    """More connections that never authenticate than the host has room
    for (256) do not keep a client with the code out: past 64 waiting, a
    new one closes the one that waited longest."""
    h = hosts(small_share)
    p = silent(h, 270, transport, 120)
    try:
        line = p.stdout.readline().split()
        assert line[0] == "up" and int(line[1]) <= 64, line
        r = get(h, "data.bin", os.path.join(workdir, "got"),
                os.path.join(workdir, "cache"), "--transport", transport)
        assert r["bytes"] == 4 * MiB
        assert "too many connections waiting to authenticate" in h.stderr()
        assert p.poll() is None  # the silent ones were still there
    finally:
        p.kill()
        p.wait()
    assert h.alive()
