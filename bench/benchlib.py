"""Shared pieces of the benchmarks: building, a private sshd, page cache
control, timing.  Everything started here is stopped by cleanup()."""
import atexit
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build-bench")
# WH_BENCH_BIN: run another build (say, the one before a change) instead
WH = os.environ.get("WH_BENCH_BIN") or os.path.join(BUILD, "wormhole")


def _null_device():
    """A path that discards what is written to it: /dev/null, unless that is
    not the null device.  On the shared machine it was found a regular file
    (removed, then created again by a `> /dev/null`), which keeps what is
    written to it: a `cat FILE > /dev/null` left hundreds of MB in it, and
    ssh, given UserKnownHostsFile=/dev/null, parsed all of it as known hosts
    at each start (bench/README.md, "Why scp and rsync had two speeds").
    Then a null device of our own, in a directory removed at exit."""
    try:
        st = os.stat("/dev/null")
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3):
            return "/dev/null", None
        note = "/dev/null is not the null device (a %s of %d bytes)" % (
            "regular file" if stat.S_ISREG(st.st_mode) else "file", st.st_size)
    except OSError as e:
        note = "/dev/null: %s" % e
    try:
        d = tempfile.mkdtemp(prefix="wh-bench-null-")
        atexit.register(shutil.rmtree, d, True)
        p = os.path.join(d, "null")
        os.mknod(p, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.chmod(p, 0o666)
    except OSError as e:
        sys.stderr.write("bench: %s, and no null device of our own (%s): figures "
                         "that write to it are off\n" % (note, e))
        return "/dev/null", note + "; used anyway"
    sys.stderr.write("bench: %s; discarding into %s instead\n" % (note, p))
    return p, note + "; the benchmarks used a null device of their own"


# what the benchmarks discard into, and why not /dev/null if it is not;
# subprocess.DEVNULL opens os.devnull, so it follows
NULL, NULL_NOTE = _null_device()
os.devnull = NULL


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


# --- making the benchmark's files cold
#
# "Cold" here means: none of the benchmark's own files' data is in the page
# cache.  Each file is synced (so no dirty page stays), dropped with
# posix_fadvise(POSIX_FADV_DONTNEED), and its residency then checked with
# mincore(2); what stays (a page mapped by some process, or dirtied again
# meanwhile) is counted and reported in the results' machine line.  Only
# the files named are touched: writing to /proc/sys/vm/drop_caches instead
# would throw away every other user's page cache, dentries and inodes on a
# shared machine.  Directory entries and inodes stay cached (metadata is
# warm).  DROP_ALL (a benchmark's opt-in --drop-all) adds the old
# machine-wide drop for when cold metadata is the point.

DROP_ALL = False
# what make_cold() did over the run, for machine()
COLD = {"calls": 0, "files": 0, "before": 0, "after": 0, "max_after": 0,
        "unknown": 0, "drop_all": 0}
_PAGE = os.sysconf("SC_PAGE_SIZE")
_libc = None


def _c():
    """libc's mmap, munmap, mincore and syncfs through ctypes"""
    global _libc
    if _libc is None:
        import ctypes
        lc = ctypes.CDLL(None, use_errno=True)
        lc.mmap.restype = ctypes.c_void_p
        lc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                            ctypes.c_int, ctypes.c_int, ctypes.c_long]
        lc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        lc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        lc.syncfs.argtypes = [ctypes.c_int]
        _libc = (ctypes, lc)
    return _libc


def resident_pages(fd, size):
    """how many of the pages of the file open as |fd| (|size| bytes) are in
    the page cache (mincore of a mapping that is never touched, so it
    faults nothing in), or None if the file cannot be mapped"""
    if size <= 0:
        return 0
    ctypes, lc = _c()
    import mmap
    addr = lc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    if addr is None or addr == ctypes.c_void_p(-1).value:
        return None
    try:
        n = (size + _PAGE - 1) // _PAGE
        vec = (ctypes.c_ubyte * n)()
        if lc.mincore(addr, size, vec) != 0:
            return None
        return n - bytes(vec).count(0)
    finally:
        lc.munmap(addr, size)


def _mount_points():
    """the mount points this process sees (/proc/self/mountinfo), so that a
    walk skips them without a stat (a wedged FUSE daemon would hang it)"""
    out = set()
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mp = line.split()[4]
                out.add(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), mp))
    except OSError:
        pass
    return out


def _regular_files(paths):
    """(path, size, st_dev) of the regular files of |paths|: files, and the
    trees of directories, which are walked without entering the file
    systems mounted inside them (a path given is entered even if it is a
    mount point: name a mount to make its files cold) or following links"""
    mounts = _mount_points()
    for top in map(os.path.abspath, paths):  # as mountinfo has them
        try:
            st = os.lstat(top)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            yield top, st.st_size, st.st_dev
            continue
        if not stat.S_ISDIR(st.st_mode):
            continue
        todo = [top]
        while todo:
            d = todo.pop()
            try:
                it = os.scandir(d)
            except OSError:
                continue
            with it:
                for e in it:
                    if e.path in mounts:
                        continue
                    try:
                        if e.is_dir(follow_symlinks=False):
                            todo.append(e.path)
                        elif e.is_file(follow_symlinks=False):
                            s = e.stat(follow_symlinks=False)
                            yield e.path, s.st_size, s.st_dev
                    except OSError:
                        pass


def _drop(path, size, sync):
    """fadvise DONTNEED on one file (fsync first if |sync|): (pages resident
    before, after; after None if unknown)"""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return 0, None
    try:
        before = resident_pages(fd, size) or 0
        if sync:
            os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return before, resident_pages(fd, size)
    except OSError:
        return 0, None
    finally:
        os.close(fd)


def make_cold(*paths, quiet=False):
    """Evict the files of |paths| (files, or directory trees) from the page
    cache, and only them: sync each file system they are on (syncfs), then
    fadvise DONTNEED each file; a file with pages still resident is
    fsynced and dropped again, once.  Returns (files, pages resident
    before, pages resident after); the totals go to COLD for machine().
    With DROP_ALL, also drops the whole machine's caches (opt-in)."""
    files = list(_regular_files(paths))
    ctypes, lc = _c()
    for dev in {f[2] for f in files}:
        p = next(f[0] for f in files if f[2] == dev)
        try:
            fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            lc.syncfs(fd)
        finally:
            os.close(fd)
    before = after = unknown = 0
    for path, size, _ in files:
        b, a = _drop(path, size, False)
        if a:
            _, a = _drop(path, size, True)  # dirtied again or mapped: once more
        before += b
        if a is None:
            unknown += 1
        else:
            after += a
    if DROP_ALL:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        COLD["drop_all"] += 1
    COLD["calls"] += 1
    COLD["files"] += len(files)
    COLD["before"] += before
    COLD["after"] += after
    COLD["max_after"] = max(COLD["max_after"], after)
    COLD["unknown"] += unknown
    if after and not quiet:
        sys.stderr.write("bench: %d pages of %d files still in the page cache after "
                         "eviction\n" % (after, len(files)))
    return len(files), before, after


def cold_note():
    """what make_cold() did, for the results' machine line"""
    c = COLD
    if not c["calls"]:
        return ""
    s = ("page cache: the benchmark's own files evicted %d times (fadvise DONTNEED, "
         "%d files in all, %d pages of them were resident before), %d pages still "
         "resident after (at most %d at once)" % (
             c["calls"], c["files"], c["before"], c["after"], c["max_after"]))
    if c["unknown"]:
        s += ", residency unknown for %d files (not mappable)" % c["unknown"]
    if c["drop_all"]:
        s += "; --drop-all: the whole machine's caches dropped too, %d times" % c["drop_all"]
    return s


def parse_size(s):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(s[:-1]) * mult[s[-1].upper()] if s[-1].upper() in mult else int(s)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_seconds(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError):
        return 0.0


def _stat(pid):
    """(ppid, utime+stime+cutime+cstime in ticks) of |pid|, or None"""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fl = f.read().rsplit(")", 1)[1].split()
        return int(fl[1]), sum(int(x) for x in fl[11:15])
    except (OSError, IndexError, ValueError):
        return None


def _all_stats():
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(int(d))
            if st:
                out[int(d)] = st
    return out


def tree_cpu_seconds(*pids):
    """CPU seconds of |pids| and of their descendants (each counted once),
    live ones and those reaped (a process's reaped children count in its
    own stat): daemons with the sessions they fork, found by pid, never by
    name (which would catch everyone else's on a shared machine)."""
    stats = _all_stats()
    kids = {}
    for p, (ppid, _) in stats.items():
        kids.setdefault(ppid, []).append(p)
    total, todo, seen = 0, list(pids), set()
    while todo:
        p = todo.pop()
        if p in seen or p not in stats:
            continue
        seen.add(p)
        total += stats[p][1]
        todo += kids.get(p, [])
    return total / os.sysconf("SC_CLK_TCK")


def pids_with_args(*args):
    """The processes whose command line has every one of |args| as an
    argument of its own, e.g. a daemon by the unique mount point it was
    given (it forked away, so its pid is not ours to know)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0")]
        except OSError:
            continue
        if all(a in argv for a in args):
            out.append(int(d))
    return out


def build():
    sh(os.path.join(ROOT, "scripts", "deps.sh"), "bench")
    sh("cmake", "-S", ROOT, "-B", BUILD, "-DCMAKE_BUILD_TYPE=Release",
       "-DWH_TESTS=OFF", stdout=subprocess.DEVNULL)
    sh("cmake", "--build", BUILD, "-j2", stdout=subprocess.DEVNULL)


def random_file(path, size):
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 16 << 20)
            f.write(os.urandom(n))
            left -= n


def loadavg():
    """the 1, 5 and 15 minute load averages, as /proc/loadavg has them"""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


LOAD_AT_START = loadavg()  # when the benchmark started (this module's import)


def machine():
    """the machine, and how busy it was: others' work on a shared machine
    moves every wall-clock figure, so a result says how loaded it was"""
    cpu = open("/proc/cpuinfo").read()
    model = [l.split(":", 1)[1].strip() for l in cpu.splitlines()
             if l.startswith("model name")][:1]
    cold = cold_note()
    return "%d cores, %s, Linux %s; load average %s at the start, %s at the end%s%s" % (
        os.cpu_count(), model[0] if model else "?", os.uname().release,
        LOAD_AT_START, loadavg(), "; " + NULL_NOTE if NULL_NOTE else "",
        "; " + cold if cold else "")


def journaled_fs(work, kind="ext4"):
    """a fresh file system with a journal, on an image in |work|,
    loop-mounted at work/destfs: where the benchmarks copy trees of small
    files.  This machine's root file system has no journal, and its inode
    allocator then passes over every inode deleted in the last minute or
    more, so each contestant paid for the trees deleted before it
    (bench/README.md, "Small files on the LAN: what paces them").  Its
    mount point; unmount with unmount_fs."""
    img = os.path.join(work, "dest.img")
    mnt = os.path.join(work, "destfs")
    os.mkdir(mnt)
    with open(img, "wb") as f:
        f.truncate(8 << 30)
    sh("mkfs." + kind, "-q", "-F", img)
    sh("mount", "-o", "loop", img, mnt)
    return mnt


def unmount_fs(mnt):
    subprocess.run(["umount", mnt], stderr=subprocess.DEVNULL)
    if os.path.ismount(mnt):
        subprocess.run(["umount", "-l", mnt], stderr=subprocess.DEVNULL)


def exit_on_signals():
    """SIGTERM, SIGHUP and SIGINT end the benchmark through sys.exit, so
    its finally clauses remove what it made (namespaces, mounts, daemons).
    SIGINT too: a script started in the background by a shell inherits it
    ignored, and would not stop on ^C's signal otherwise."""
    import signal as _signal

    for sig in (_signal.SIGTERM, _signal.SIGHUP, _signal.SIGINT):
        _signal.signal(sig, lambda *a: sys.exit(1))


class Lab:
    """A work directory with a private sshd and wormhole processes."""

    def __init__(self, keep=False):
        self.work = __import__("tempfile").mkdtemp(prefix="wh-bench-")
        # a wormhole started without --cache-dir keeps its store here,
        # gone with the work directory, not in the user's ~/.cache that
        # other runs on the machine share
        os.environ["XDG_CACHE_HOME"] = os.path.join(self.work, "xdg-cache")
        self.procs = []
        self.mounts = []
        self.keep = keep

    def start_sshd(self, addr="127.0.0.1", port=None, prefix=(), tag="ssh"):
        """A private sshd with throwaway keys on addr (a free port unless
        given); prefix runs it elsewhere, e.g. nsenter into a namespace."""
        d = os.path.join(self.work, tag)
        os.mkdir(d, 0o700)
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(d, "host"))
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(d, "client"))
        shutil.copy(os.path.join(d, "client.pub"), os.path.join(d, "authorized_keys"))
        self.ssh_port = port or free_port()
        self.ssh_addr = addr
        # the client knows the host's key, as a user's known_hosts would;
        # never /dev/null (see _null_device)
        self.known_hosts = os.path.join(d, "known_hosts")
        with open(os.path.join(d, "host.pub")) as f:
            key = " ".join(f.read().split()[:2])
        with open(self.known_hosts, "w") as f:
            f.write("[%s]:%d %s\n" % (addr, self.ssh_port, key))
        # ssh_wrap: ssh, then the CPU time it used appended to ssh_times
        # (scp -S, rsync -e): the client's own share of scp's and rsync's CPU
        self.ssh_times = os.path.join(d, "ssh-times")
        self.ssh_wrap = os.path.join(d, "ssh-timed")
        with open(self.ssh_wrap, "w") as f:
            f.write('#!/bin/sh\n%s "$@"\nrc=$?\ntimes >> %s\nexit $rc\n' % (
                shutil.which("ssh") or "ssh", self.ssh_times))
        os.chmod(self.ssh_wrap, 0o755)
        cfg = os.path.join(d, "sshd_config")
        with open(cfg, "w") as f:
            f.write("Port %d\nListenAddress %s\nHostKey %s/host\n"
                    "PermitRootLogin prohibit-password\nAuthorizedKeysFile %s/authorized_keys\n"
                    "UsePAM no\nStrictModes no\nPidFile %s/sshd.pid\n"
                    "Subsystem sftp internal-sftp\n" % (self.ssh_port, addr, d, d, d))
        os.makedirs("/run/sshd", exist_ok=True)
        self.sshd = subprocess.Popen([*prefix, "/usr/sbin/sshd", "-D", "-e", "-f", cfg],
                                     stderr=subprocess.DEVNULL)
        self.procs.append(self.sshd)
        self.ssh_key = os.path.join(d, "client")
        self.ssh_opts = ["-i", self.ssh_key, "-o", "StrictHostKeyChecking=accept-new",
                         "-o", "UserKnownHostsFile=" + self.known_hosts,
                         "-o", "LogLevel=ERROR", "-c", "aes128-gcm@openssh.com"]
        time.sleep(0.5)

    def ssh_cmd(self, timed=False):
        """the ssh command line for rsync -e; timed: through ssh_wrap"""
        return "%s -p %d %s" % (self.ssh_wrap if timed else "ssh", self.ssh_port,
                                " ".join(self.ssh_opts))

    def sshfs_opts(self):
        """sshfs's -o: the same key, known hosts and cipher as scp's"""
        return ("IdentityFile=%s,StrictHostKeyChecking=accept-new,UserKnownHostsFile=%s,"
                "Ciphers=aes128-gcm@openssh.com,port=%d" % (self.ssh_key, self.known_hosts,
                                                           self.ssh_port))

    def ssh_client_cpu(self):
        """CPU seconds (user + system) of the ssh_wrap clients that ended
        since the last call; None if none did"""
        try:
            with open(self.ssh_times) as f:
                lines = f.read().splitlines()
            os.unlink(self.ssh_times)
        except FileNotFoundError:
            return None
        tot = 0.0
        # `times`: the shell's own user and system time, then its children's
        for line in lines[1::2]:
            for m, s in re.findall(r"(\d+)m([\d.]+)s", line):
                tot += int(m) * 60 + float(s)
        return tot

    def ssh_negotiated(self, prefix=()):
        """what ssh -v says the client and the host agreed on (cipher, MAC,
        compression), host to client, for the report's sanity line; and the
        CPU seconds of that connection (ssh's start, key exchange included)"""
        opts = list(self.ssh_opts)
        i = opts.index("LogLevel=ERROR")
        del opts[i - 1:i + 1]
        import resource
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = subprocess.run([*prefix, "ssh", "-v", "-p", str(self.ssh_port), *opts,
                            "root@" + self.ssh_addr, "true"],
                           capture_output=True, text=True, timeout=60)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
        m = re.search(r"kex: server->client cipher: (\S+) MAC: (\S+) compression: (\S+)",
                      r.stderr)
        return ("cipher %s, MAC %s, compression %s" % m.groups() if m else
                "not found in ssh -v (exit %d)" % r.returncode), start

    def sshfs(self, src, mnt, prefix=()):
        sh(*prefix, "sshfs", "-o", self.sshfs_opts(), "root@%s:%s" % (self.ssh_addr, src), mnt)
        self.mounts.append(mnt)

    def wormhole_host(self, src, *extra, listen="127.0.0.1:0", prefix=()):
        p = subprocess.Popen([*prefix, WH, "host", src, "--listen", listen, "--no-signal",
                              *extra], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        self.procs.append(p)
        code = addr = None
        while code is None or addr is None:
            line = p.stdout.readline()
            if not line:
                raise RuntimeError("wormhole host did not start")
            if line.startswith("join code: "):
                code = line.split(": ")[1].strip()
            if line.startswith("listening: "):
                addr = line.split(": ")[1].strip()
        return p, code, addr

    def wormhole_mount(self, code, addr, mnt, *extra, prefix=()):
        sh(*prefix, WH, "mount", code, mnt, "--peer", addr, *extra)
        if mnt not in self.mounts:
            self.mounts.append(mnt)

    def cleanup_procs(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        self.procs = []

    def cleanup(self):
        for m in self.mounts:
            if os.path.ismount(m):
                subprocess.run(["fusermount3", "-u", m], stderr=subprocess.DEVNULL)
            if os.path.ismount(m):
                subprocess.run(["fusermount3", "-u", "-z", m], stderr=subprocess.DEVNULL)
        self.cleanup_procs()
        if not self.keep:
            shutil.rmtree(self.work, ignore_errors=True)


def rand_reads(path, size, reads, cold=None, record=None):
    """|cold|: the paths evicted from the page cache first (None: |path|
    alone; (): none, a warm run; give the host's source too).  Then reads random 4 KiB reads at 4 KiB-aligned offsets, O_DIRECT when the
    file system allows it (else fadvise DONTNEED before each): median and
    99th percentile latency in ms, and the mode used.  |record|, a list:
    each read's (start, end) in CLOCK_MONOTONIC ns and offset appended to
    it, in order (the clock wormhole's WH_TRACE uses)."""
    import mmap
    import random
    import statistics
    rng = random.Random(7)
    blocks = size // 4096
    buf = mmap.mmap(-1, 4096)
    cold = (path,) if cold is None else cold
    if cold:
        make_cold(*cold)
    lat = []
    mode = "O_DIRECT"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    except OSError:
        fd = os.open(path, os.O_RDONLY)
        mode = "fadvise"
    try:
        for _ in range(reads):
            off = rng.randrange(blocks) * 4096
            if mode == "fadvise":
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            t0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            n = os.preadv(fd, [buf], off)
            t1 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            lat.append((t1 - t0) / 1e6)
            if record is not None:
                record.append((t0, t1, off))
            assert n == 4096
    finally:
        os.close(fd)
    lat.sort()
    return statistics.median(lat), lat[max(0, int(len(lat) * 0.99) - 1)], mode


def write_result(name, text):
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    out = os.path.join(ROOT, "bench", "results",
                       "%s-%s.md" % (name, time.strftime("%Y%m%d-%H%M%S")))
    with open(out, "w") as f:
        f.write(text)
    return out


if __name__ == "__main__":
    # bench/benchlib.py cold PATH...: make_cold() for shell benchmarks
    if len(sys.argv) < 3 or sys.argv[1] != "cold":
        sys.exit("usage: bench/benchlib.py cold PATH...")
    n, b, a = make_cold(*sys.argv[2:])
    print("%d files, %d pages resident before, %d after" % (n, b, a))
