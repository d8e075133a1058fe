"""Shared fixtures for the end-to-end tests: real wormhole processes, real
FUSE mounts, always cleaned up.  Run as root with Debian's pytest:

    WH_BIN=build/wormhole WH_TOOLS_DIR=build/tests /usr/bin/python3 -m pytest tests/e2e
"""
import hashlib
import itertools
import json
import os
import random
import secrets
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
WH_BIN = os.environ.get("WH_BIN", os.path.join(ROOT, "build", "wormhole"))
TOOLS = os.environ.get("WH_TOOLS_DIR", os.path.join(ROOT, "build", "tests"))

MiB = 1024 * 1024


def get(h, remote, local, cache, *extra, check=True, addr=None, wrap=(),
        env=None, timeout=120):
    """`wormhole get` from host |h| (at |addr| if given, else its own) with
    --json, run behind the command prefix |wrap| (e.g. Netns.wrap) with the
    variables in |env| added to the environment: its JSON summary, or with
    check=False the CompletedProcess."""
    e = dict(os.environ, **env) if env else None
    r = subprocess.run([*wrap, WH_BIN, "get", h.code, remote, local,
                        "--peer", addr or h.addr, "--cache-dir", cache,
                        "--json", *extra],
                       capture_output=True, text=True, timeout=timeout, env=e)
    if check:
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)
    return r


def same_tree(a, b, *exclude):
    """Whether the trees |a| and |b| hold the same (symbolic links
    compared as links), but for the names in |exclude|."""
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


def mount_stats(mnt):
    """the mount's counters: the root's "user.wormhole.stats" attribute"""
    text = os.getxattr(mnt, "user.wormhole.stats").decode()
    return {k: int(v) for k, v in (line.split() for line in text.splitlines())}


def wait_for(pred, timeout, step=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


# the kernel's counts of page cache thrown away by others than the test:
# `echo 1 (or 3) > /proc/sys/vm/drop_caches` (bench/run-small --drop-all,
# other users of the machine), file pages reclaimed under memory pressure,
# and `echo 2` (which frees idle inodes and with them their pages: a FUSE
# file's as soon as its dentry goes): counted as drop_slab when done, the
# pages as pginodesteal
CACHE_LOSS_COUNTERS = ("drop_pagecache", "pgsteal_file", "drop_slab",
                       "pginodesteal")


def page_cache_losses():
    """The sum of CACHE_LOSS_COUNTERS in /proc/vmstat, or None when none of
    them can be read."""
    try:
        with open("/proc/vmstat") as f:
            stat = dict(line.split(None, 1) for line in f)
        have = [int(stat[k]) for k in CACHE_LOSS_COUNTERS if k in stat]
    except (OSError, ValueError):
        return None
    return sum(have) if have else None


def wait_caches_quiet(quiet=1.0, limit=20.0):
    """Wait (|limit| seconds at most) until no page cache was dropped or
    reclaimed for |quiet| seconds, e.g. between two rounds of a benchmark
    that drops the caches before each one."""
    end = time.monotonic() + limit
    last, since = page_cache_losses(), time.monotonic()
    while time.monotonic() < end and time.monotonic() - since < quiet:
        time.sleep(0.05)
        now = page_cache_losses()
        if now != last:
            last, since = now, time.monotonic()


def retry_if_caches_dropped(attempt, what, tries=3, dropped_tries=10,
                            settle=1.0):
    """For a check of the kernel's page cache that something else on the
    machine spoils by dropping the caches (the benchmarks do, at times
    several times a second): run |attempt| (it
    returns (ok, detail)) until it is ok and return that detail.  The
    check passes only when an attempt passes.  A failed attempt is tried
    again only when the kernel's counters show page cache was dropped or
    reclaimed while it ran (|dropped_tries| attempts at most, each after
    the drops paused), or when they cannot be read (|tries| attempts at
    most, all of which must fail); when nothing dropped pages the first
    failure is final.  The test fails with |what| and every attempt's
    detail.  A drop is counted when it ends, so a failure waits |settle|
    seconds before reading the counters again."""
    seen = []
    unknown = False
    while True:
        before = page_cache_losses()
        ok, detail = attempt()
        if ok:
            return detail
        time.sleep(settle)
        after = page_cache_losses()
        dropped = None if before is None or after is None else after - before
        unknown = unknown or dropped is None
        seen.append("%r (caches dropped or pages reclaimed meanwhile: %s)"
                    % (detail, "unknown" if dropped is None else dropped))
        if dropped == 0:
            break  # nothing else dropped pages: the failure is ours
        if len(seen) >= (tries if unknown else dropped_tries):
            break
        if dropped:
            wait_caches_quiet()
    pytest.fail("%s: %s" % (what, "; ".join(seen)))


def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ----------------------------------------------------- network namespaces
#
# Every namespace a test makes is named "wh<kind>-<pid>-<hex>", <pid> being
# the pytest process that made it.  A run killed mid-way (no fixture
# teardown) leaves its namespaces behind; the next session removes those
# whose maker is gone, and never one whose maker still runs (another
# checkout's suite on the same machine, say).

NETNS_RE = re.compile(r"^wh[a-z0-9]*-([0-9]+)-[0-9a-f]+$")


def netns_name(kind):
    """A fresh namespace name of the scheme above, for this process."""
    return "wh%s-%d-%04x" % (kind, os.getpid(), random.getrandbits(16))


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ours(pid):
    """Whether process |pid| is one of the suite's binaries."""
    try:
        exe = os.readlink("/proc/%d/exe" % pid)
    except OSError:
        return False
    exe = exe.removesuffix(" (deleted)")
    return (exe == os.path.realpath(WH_BIN) or
            os.path.dirname(exe) == os.path.realpath(TOOLS))


def remove_stale_netns(run_dir="/run/netns"):
    """Delete the namespaces of the scheme above whose maker is dead (and
    kill what of the suite's binaries still runs in them).  Returns the names
    removed."""
    try:
        names = os.listdir(run_dir)
    except OSError:
        return []
    removed = []
    for name in names:
        m = NETNS_RE.match(name)
        if not m or _pid_alive(int(m.group(1))):
            continue
        r = subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                           text=True)
        for pid in r.stdout.split():
            if pid.isdigit() and _ours(int(pid)):
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
        r = subprocess.run(["ip", "netns", "del", name], capture_output=True)
        if r.returncode == 0:
            removed.append(name)
    return removed


def pytest_sessionstart(session):
    if os.geteuid() == 0 and shutil.which("ip"):
        remove_stale_netns()


# ------------------------------------------- diagnostics of a failed test
#
# Every daemon a test starts is tracked here, so that when a test fails its
# report ends with each one's exit status and the tail of its log: a flake
# seen once under load can then be read, not guessed at.

LOG_TAIL_LINES = 40
_tracked = []     # [Tracked], oldest first
_test_epoch = [0]  # bumped as each test starts


class Tracked:
    def __init__(self, label, proc, logpath):
        self.label, self.proc, self.logpath = label, proc, logpath
        self.closed_in = None  # the epoch of the test that closed it
        self.tail = None       # the log's tail, kept when the log goes
        _tracked.append(self)

    def read_tail(self):
        if self.tail is not None:
            return self.tail
        try:
            with open(self.logpath, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 64 * 1024))
                lines = f.read().decode(errors="replace").splitlines()
        except OSError as e:
            return "(log unreadable: %s)" % e
        return "\n".join(lines[-LOG_TAIL_LINES:]) or "(empty)"

    def closing(self):
        """Call before the log is removed."""
        self.tail = self.read_tail()
        self.closed_in = _test_epoch[0]

    def status(self):
        rc = self.proc.poll()
        if rc is None:
            return "still running (pid %d)" % self.proc.pid
        if rc < 0:
            try:
                name = signal.Signals(-rc).name
            except ValueError:
                name = "signal %d" % -rc
            return "killed by %s" % name
        return "exited with status %d" % rc

    def describe(self):
        return "%s: %s\n--- last %d lines of its log ---\n%s" % (
            self.label, self.status(), LOG_TAIL_LINES, self.read_tail())


def track(label, proc, logpath):
    """Report |proc| (and the tail of |logpath|) if the current test fails."""
    return Tracked(label, proc, logpath)


def drop_log(tracked, log):
    """Close and remove a daemon's |log| file, its tail kept first by
    |tracked| (if it was started) for the failure report."""
    if tracked:
        tracked.closing()
    log.close()
    try:
        os.unlink(log.name)
    except OSError:
        pass


def daemons_report():
    """The tracked daemons that concern the current test: still open, or
    closed by it."""
    now = _test_epoch[0]
    _tracked[:] = [t for t in _tracked if t.closed_in in (None, now)]
    return "\n\n".join(t.describe() for t in _tracked)


def pytest_runtest_setup(item):
    _test_epoch[0] += 1


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        text = daemons_report()
        if text:
            rep.sections.append(("wormhole processes (%s)" % rep.when, text))


class Host:
    """A `wormhole host` process; stdout gives the code and the port."""

    def __init__(self, share, code=None, port=0, extra=(), ip="127.0.0.1",
                 wrap=()):
        """|wrap|: a command prefix, e.g. nsenter into a namespace."""
        self.share = share
        self.log = tempfile.NamedTemporaryFile(prefix="wh-host-", suffix=".log",
                                               delete=False)
        self.proc = self.tracked = None
        try:
            self._start(share, code, port, extra, ip, wrap)
        except BaseException:
            # the log's tail stays in the report; the file goes
            if self.proc:
                self.kill()
            drop_log(self.tracked, self.log)
            raise

    def _start(self, share, code, port, extra, ip, wrap):
        args = [*wrap, WH_BIN, "host", share, "--listen", "%s:%d" % (ip, port),
                "--no-signal"]
        if code:
            args += ["--code", code]
        args += list(extra)
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True)
        self.tracked = track("host %s" % share, self.proc, self.log.name)
        self.code = None
        self.port = None
        end = time.monotonic() + 10
        while time.monotonic() < end and (self.code is None or self.port is None):
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith("join code: "):
                self.code = line.split(": ", 1)[1].strip()
            elif line.startswith("listening: "):
                self.port = int(line.rsplit(":", 1)[1])
        if self.code is None or self.port is None:
            self.kill()
            raise RuntimeError("host did not start: " + self.stderr())
        self.addr = "%s:%d" % (ip, self.port)

    def stderr(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=10):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self):
        self.stop()
        drop_log(self.tracked, self.log)


def mounted(mnt):
    """Whether |mnt| is a mount point, dead FUSE mounts included (for them
    os.path.ismount says no: their root cannot be stat'ed)."""
    if os.path.ismount(mnt):
        return True
    real = os.path.realpath(mnt)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == real for line in f)


def unmount(mnt):
    if mounted(mnt):
        subprocess.run(["fusermount3", "-u", mnt], stderr=subprocess.DEVNULL)
    if mounted(mnt):
        subprocess.run(["fusermount3", "-u", "-z", mnt], stderr=subprocess.DEVNULL)


class Mount:
    """`wormhole mount --foreground` in a child process, live on return."""

    def __init__(self, host_or_code, mnt, addr=None, extra=(), wait=True,
                 wrap=()):
        if isinstance(host_or_code, Host):
            code, addr = host_or_code.code, host_or_code.addr
        else:
            code = host_or_code
        self.mnt = mnt
        self.proc = self.tracked = self.cache = None
        self.log = tempfile.NamedTemporaryFile(prefix="wh-mount-", suffix=".log",
                                               delete=False)
        try:
            self._start(code, addr, extra, wait, wrap)
        except BaseException:
            # as Host: the log's tail stays in the report, no file stays
            self.close()
            raise

    def _start(self, code, addr, extra, wait, wrap):
        args = [*wrap, WH_BIN, "mount", code, self.mnt, "--peer", addr,
                "--foreground"]
        args += list(extra)
        # a chunk store of its own unless the test shares one
        if "--cache-dir" not in extra:
            self.cache = tempfile.mkdtemp(prefix="wh-cache-")
            args += ["--cache-dir", self.cache]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                     stderr=self.log)
        self.tracked = track("mount %s" % self.mnt, self.proc, self.log.name)
        if wait and not wait_for(lambda: os.path.ismount(self.mnt) or
                                 self.proc.poll() is not None, 20):
            raise RuntimeError("mount did not come up: " + self.stderr())
        if wait and not os.path.ismount(self.mnt):
            raise RuntimeError("mount failed: " + self.stderr())

    def stderr(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def close(self):
        """Unmount, end the process, remove the log and the chunk store
        made for it; safe after a failed start and when called twice."""
        unmount(self.mnt)
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        unmount(self.mnt)
        drop_log(self.tracked, self.log)
        if self.cache:
            shutil.rmtree(self.cache, ignore_errors=True)


def netns_skip_reason(*tools):
    """Why network namespace tests cannot run here (root, `ip`, `nsenter`
    and |tools| are needed), or None."""
    if os.geteuid() != 0:
        return "network namespace tests need root"
    for tool in ("ip", "nsenter", *tools):
        if not shutil.which(tool):
            return ("network namespace tests need '%s' "
                    "(scripts/deps.sh test)" % tool)
    return None


def sh(*cmd, check=True, input=None):
    """Run |cmd| (30 s at most): the CompletedProcess; with check, a
    failure raises CalledProcessError with its output."""
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                       input=input)
    if check and r.returncode != 0:
        raise subprocess.CalledProcessError(r.returncode, cmd, r.stdout,
                                            r.stderr)
    return r


_netns_count = itertools.count()


class Netns:
    """Network namespaces, one per role in ROLES, each with its loopback
    up, named by netns_name() from PREFIX and the role (the maker's pid
    and random bits), then build() makes the topology; |tag| is a short
    string unique to this object (a counter and random bits).
    close() kills what still runs inside and removes them all; a failed
    build removes what it made before it raises."""

    PREFIX = "whn"
    ROLES = ()

    def __init__(self):
        # the scheme of netns_name(), so a killed run's are found again
        self.tag = "%x%s" % (next(_netns_count), secrets.token_hex(2))
        self.ns = {r: netns_name(self.PREFIX[2:] + r) for r in self.ROLES}
        self.made = []
        try:
            for name in self.ns.values():
                sh("ip", "netns", "add", name)
                self.made.append(name)
                sh("ip", "-n", name, "link", "set", "lo", "up")
            self.build()
        except Exception:
            self.close()
            raise

    def build(self):
        pass

    def path(self, role):
        return "/run/netns/" + self.ns[role]

    def wrap(self, role):
        """The command prefix that runs a program inside |role|."""
        return ["nsenter", "--net=" + self.path(role), "--"]

    def ip(self, role, *args):
        return sh("ip", "-n", self.ns[role], *args)

    def run(self, role, *args, check=True, input=None):
        return sh(*self.wrap(role), *args, check=check, input=input)

    def popen(self, role, args, **kw):
        return subprocess.Popen(self.wrap(role) + list(args), **kw)

    def veth(self, a, ifa, b, ifb):
        """A veth pair: |ifa| in |a|, |ifb| in |b|."""
        sh("ip", "link", "add", "name", ifa, "netns", self.ns[a], "type",
           "veth", "peer", "name", ifb, "netns", self.ns[b])

    def addr(self, role, ifname, cidr, gw=None):
        """|cidr| on |ifname|, the link up, and a default route by |gw|."""
        self.ip(role, "addr", "add", cidr, "dev", ifname)
        self.ip(role, "link", "set", ifname, "up")
        if gw:
            self.ip(role, "route", "add", "default", "via", gw)

    def close(self):
        for name in reversed(self.made):
            r = subprocess.run(["ip", "netns", "pids", name],
                               capture_output=True, text=True)
            for pid in r.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self.made = []


@pytest.fixture
def netns():
    """Factory: netns(cls, *tools) builds a Netns subclass for this test,
    removed at its end; the test is skipped where that cannot be done."""
    made = []

    def make(cls, *tools):
        why = netns_skip_reason(*tools)
        if why:
            pytest.skip(why)
        try:
            n = cls()
        except (subprocess.CalledProcessError, OSError) as e:
            pytest.skip("cannot build network namespaces here: %s" % e)
        made.append(n)
        return n
    yield make
    for n in made:
        n.close()


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="wh-e2e-")
    yield d
    for sub in os.listdir(d):
        unmount(os.path.join(d, sub))
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def mkmnt(workdir):
    n = [0]

    def make():
        n[0] += 1
        p = os.path.join(workdir, "mnt%d" % n[0])
        os.mkdir(p)
        return p
    return make


@pytest.fixture
def hosts():
    """Factory for hosts that are stopped at the end of the test."""
    made = []

    def make(share, **kw):
        h = Host(share, **kw)
        made.append(h)
        return h
    yield make
    for h in made:
        h.close()


@pytest.fixture
def mounts():
    made = []

    def make(*a, **kw):
        m = Mount(*a, **kw)
        made.append(m)
        return m
    yield make
    for m in made:
        m.close()


def build_tree(base):
    """The tree of the foundation issue.  Returns (share, outside_dir)."""
    rng = random.Random(1234)
    share = os.path.join(base, "share")
    outside = os.path.join(base, "outside")
    os.makedirs(share)
    os.makedirs(outside)
    with open(os.path.join(outside, "secret"), "w") as f:
        f.write("outside the share\n")

    d = share
    for i in range(10):
        d = os.path.join(d, "level%d" % i)
        os.mkdir(d)
        with open(os.path.join(d, "f%d.txt" % i), "w") as f:
            f.write("depth %d\n" % i)
    open(os.path.join(share, "empty"), "w").close()
    with open(os.path.join(share, "one"), "wb") as f:
        f.write(b"x")
    with open(os.path.join(share, "mib_plus_one"), "wb") as f:
        f.write(rng.randbytes(MiB + 1))
    with open(os.path.join(share, "random64"), "wb") as f:
        f.write(os.urandom(64 * MiB))
    many = os.path.join(share, "many")
    os.mkdir(many)
    for i in range(2000):
        with open(os.path.join(many, "entry-%04d" % i), "w") as f:
            f.write(str(i))
    with open(os.path.join(share, "name with spaces.txt"), "w") as f:
        f.write("spaces\n")
    with open(os.path.join(share, "ünïcødé-日本語.txt"), "w") as f:
        f.write("utf-8\n")
    with open(os.path.join(share.encode(), b"latin1-\xe9\xff.bin"), "wb") as f:
        f.write(b"not utf-8 name\n")
    with open(os.path.join(share, "L" * 255), "w") as f:
        f.write("long name\n")
    with open(os.path.join(share, "sparse"), "wb") as f:
        f.truncate(5 * 1024 * MiB)
        f.seek(4 * 1024 * MiB - 3)
        f.write(b"across-4GiB")
        f.seek(5 * 1024 * MiB - 4)
        f.write(b"END!")
    os.symlink("one", os.path.join(share, "link-inside"))
    os.symlink("level0/level1", os.path.join(share, "link-dir"))
    os.symlink(os.path.join(outside, "secret"), os.path.join(share, "link-abs-out"))
    os.symlink("../outside/secret", os.path.join(share, "link-rel-out"))
    os.symlink("does-not-exist", os.path.join(share, "link-broken"))
    os.symlink("loop-b", os.path.join(share, "loop-a"))
    os.symlink("loop-a", os.path.join(share, "loop-b"))
    os.mkfifo(os.path.join(share, "a-fifo"))
    return share, outside


@pytest.fixture(scope="session")
def tree():
    base = tempfile.mkdtemp(prefix="wh-tree-")
    share, outside = build_tree(base)
    yield share, outside
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def small_share(workdir):
    share = os.path.join(workdir, "small")
    os.mkdir(share)
    with open(os.path.join(share, "hello.txt"), "w") as f:
        f.write("hello\n")
    with open(os.path.join(share, "data.bin"), "wb") as f:
        f.write(os.urandom(4 * MiB))
    return share
