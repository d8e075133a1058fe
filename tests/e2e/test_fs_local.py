"""The FUSE layer and the share together, without the network: wh_localmount
serves a local folder through the wormhole file system in one process.
Everything read through the mount matches the folder, changes to the folder
show within a second, reads never mix two versions of a file, nothing blocks
forever, and the tool exits 0 when unmounted or signalled.

Run as root with Debian's pytest (WH_TOOLS_DIR is the build's tests/ dir;
WH_LOCALMOUNT may name the tool directly):

    WH_TOOLS_DIR=build/tests /usr/bin/python3 -m pytest tests/e2e/test_fs_local.py
"""
import errno
import os
import random
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from conftest import MiB, TOOLS, wait_for

LOCALMOUNT = os.environ.get("WH_LOCALMOUNT",
                            os.path.join(TOOLS, "wh_localmount"))
GiB = 1024 * MiB
SPARSE_SIZE = 4 * GiB + 8192
DEPTH = 10
MANY = 2000

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root (FUSE, cgroups)")


def mounted(mnt):
    """True if |mnt| is a mount point, even a dead one (where lstat, and so
    os.path.ismount, fails with ENOTCONN)."""
    esc = os.path.realpath(mnt).replace("\\", "\\134").replace(" ", "\\040")
    with open("/proc/self/mounts") as f:
        return any(line.split(" ")[1] == esc for line in f)


class LocalMount:
    """A wh_localmount process; live (it printed "mounted") on return."""

    def __init__(self, src, mnt, *extra):
        assert os.access(LOCALMOUNT, os.X_OK), \
            "no test tool at %s (set WH_TOOLS_DIR or WH_LOCALMOUNT)" % LOCALMOUNT
        self.src, self.mnt = src, mnt
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([LOCALMOUNT, src, mnt] + list(extra),
                                     stdout=subprocess.PIPE, stderr=self.err)
        out = b""
        end = time.monotonic() + 20
        while b"mounted\n" not in out and time.monotonic() < end:
            ready, _, _ = select.select([self.proc.stdout], [], [],
                                        max(0.0, end - time.monotonic()))
            if not ready:
                break
            chunk = os.read(self.proc.stdout.fileno(), 100)
            if not chunk:
                break
            out += chunk
        if b"mounted\n" not in out:
            self.cleanup()
            raise RuntimeError("wh_localmount did not come up: %r %s" %
                               (out, self.stderr()))

    def stderr(self):
        self.err.seek(0)
        return self.err.read().decode(errors="replace")

    def stop(self, how="unmount", timeout=20):
        """Unmount with fusermount3 -u (or send signal |how|) and wait.
        Returns the exit status (None if it did not exit in time)."""
        if how == "unmount":
            r = subprocess.run(["fusermount3", "-u", self.mnt],
                               capture_output=True)
            assert r.returncode == 0, r.stderr
        else:
            self.proc.send_signal(how)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            rc = None
        self.cleanup()
        return rc

    def cleanup(self):
        """Never leave a process or a stale mount behind."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if mounted(self.mnt):
            subprocess.run(["fusermount3", "-u", "-z", self.mnt],
                           stderr=subprocess.DEVNULL)

    def check_clean_exit(self, how="unmount"):
        rc = self.stop(how)
        err = self.stderr()
        assert rc == 0, "exit status %r: %s" % (rc, err[-3000:])
        assert not mounted(self.mnt)
        for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error",
                    "ERROR:"):
            assert bad not in err, err[-3000:]
        return err


def build_tree(base):
    """The test tree.  Returns (share, outside)."""
    rng = random.Random(4321)
    share = os.path.join(base, "share")
    outside = os.path.join(base, "outside")
    os.makedirs(share)
    os.makedirs(outside)
    with open(os.path.join(outside, "secret"), "w") as f:
        f.write("outside the share\n")
    d = share
    for i in range(DEPTH):
        d = os.path.join(d, "d%d" % i)
        os.mkdir(d)
        with open(os.path.join(d, "at-depth-%d" % (i + 1)), "w") as f:
            f.write("depth %d\n" % (i + 1))
    open(os.path.join(share, "empty"), "w").close()
    with open(os.path.join(share, "one"), "wb") as f:
        f.write(b"1")
    with open(os.path.join(share, "mib_plus_one"), "wb") as f:
        f.write(rng.randbytes(MiB + 1))
    with open(os.path.join(share, "random8"), "wb") as f:
        f.write(rng.randbytes(8 * MiB))
    many = os.path.join(share, "many")
    os.mkdir(many)
    for i in range(MANY):
        with open(os.path.join(many, "entry %04d" % i), "w") as f:
            f.write(str(i))
    with open(os.path.join(share, "name with  spaces .txt"), "w") as f:
        f.write("spaces\n")
    with open(os.path.join(share, "ünïcødé-日本語-🙂.txt"), "w") as f:
        f.write("utf-8\n")
    with open(os.path.join(os.fsencode(share), b"latin1-\xe9\xff-\x80.bin"),
              "wb") as f:
        f.write(b"a name that is not utf-8\n")
    with open(os.path.join(share, "N" * 255), "w") as f:
        f.write("a 255-byte name\n")
    with open(os.path.join(share, "sparse"), "wb") as f:
        f.truncate(SPARSE_SIZE)
        f.seek(4 * GiB - 3)
        f.write(b"across-4GiB")
        f.seek(SPARSE_SIZE - 4)
        f.write(b"END!")
    os.symlink("one", os.path.join(share, "link-inside"))
    os.symlink("d0/d1", os.path.join(share, "link-dir"))
    os.symlink(os.path.join(outside, "secret"),
               os.path.join(share, "link-abs-out"))
    os.symlink("../outside/secret", os.path.join(share, "link-rel-out"))
    os.symlink("does-not-exist", os.path.join(share, "link-broken"))
    os.symlink("loop-b", os.path.join(share, "loop-a"))
    os.symlink("loop-a", os.path.join(share, "loop-b"))
    return share, outside


def walk(top):
    """Every path below |top| (bytes, relative), links not followed."""
    out = []
    top = os.fsencode(top)
    for dirpath, dirnames, filenames in os.walk(top):
        rel = os.path.relpath(dirpath, top)
        for n in dirnames + filenames:
            out.append(os.path.normpath(os.path.join(rel, n)))
    return sorted(out)


@pytest.fixture(scope="module")
def tree():
    base = tempfile.mkdtemp(prefix="wh-fs-tree-")
    try:
        yield build_tree(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="wh-fs-")
    yield d
    for sub in os.listdir(d):
        p = os.path.join(d, sub)
        if mounted(p):
            subprocess.run(["fusermount3", "-u", "-z", p],
                           stderr=subprocess.DEVNULL)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def tm(tree):
    """The tree, mounted once for the read-only checks; unmounting it at
    the end must end the tool with status 0 (and, under ASan, no leak)."""
    share, outside = tree
    mnt = tempfile.mkdtemp(prefix="wh-fs-mnt-")
    m = None
    try:
        m = LocalMount(share, mnt)
        yield share, outside, mnt
        m.check_clean_exit()
    finally:
        if m:
            m.cleanup()
        os.rmdir(mnt)


@pytest.fixture
def local_mounts(workdir):
    made = []

    def make(src, *extra):
        mnt = os.path.join(workdir, "mnt%d" % len(made))
        os.mkdir(mnt)
        m = LocalMount(src, mnt, *extra)
        made.append(m)
        return m
    yield make
    for m in made:
        m.cleanup()


# ---------------------------------------------------------------- contents

def test_diff_equal(tm):
    share, _, mnt = tm
    r = subprocess.run(["diff", "-r", "--no-dereference", share, mnt],
                       capture_output=True)
    assert r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace")[:3000]


def test_lstat_matches(tm):
    share, _, mnt = tm
    paths = walk(share)
    assert len(paths) > MANY + 2 * DEPTH
    assert paths == walk(mnt)
    for rel in paths:
        a = os.lstat(os.path.join(os.fsencode(share), rel))
        b = os.lstat(os.path.join(os.fsencode(mnt), rel))
        assert stat.S_IFMT(a.st_mode) == stat.S_IFMT(b.st_mode), rel
        if stat.S_ISLNK(a.st_mode):
            assert a.st_mode == b.st_mode, rel
        else:
            # the mount is read-only: it shows no write permission
            assert stat.S_IMODE(a.st_mode) & ~0o222 == stat.S_IMODE(b.st_mode), rel
        assert a.st_size == b.st_size, rel
        assert a.st_mtime_ns == b.st_mtime_ns, rel
        assert a.st_ino == b.st_ino, rel  # the host's inode numbers
        assert a.st_nlink == b.st_nlink, rel


def test_listing_and_names(tm):
    share, _, mnt = tm
    names = sorted(os.listdir(os.path.join(mnt, "many")))
    assert names == sorted(os.listdir(os.path.join(share, "many")))
    assert len(names) == MANY
    with os.scandir(os.path.join(mnt, "many")) as it:
        for e in it:
            assert e.is_file(follow_symlinks=False)
            assert e.inode() == os.lstat(os.path.join(share, "many", e.name)).st_ino
    top = os.listdir(os.fsencode(mnt))
    assert b"latin1-\xe9\xff-\x80.bin" in top
    assert b"N" * 255 in top
    with open(os.path.join(os.fsencode(mnt), b"latin1-\xe9\xff-\x80.bin"), "rb") as f:
        assert f.read() == b"a name that is not utf-8\n"
    with open(os.path.join(mnt, "N" * 255)) as f:
        assert f.read() == "a 255-byte name\n"
    with open(os.path.join(mnt, "ünïcødé-日本語-🙂.txt")) as f:
        assert f.read() == "utf-8\n"
    with open(os.path.join(mnt, "name with  spaces .txt")) as f:
        assert f.read() == "spaces\n"
    deep = os.path.join(mnt, *["d%d" % i for i in range(DEPTH)], "at-depth-10")
    with open(deep) as f:
        assert f.read() == "depth 10\n"
    for missing in ("nope", "N" * 255 + "x", "many/entry 9999"):
        with pytest.raises(OSError) as e:
            os.lstat(os.path.join(mnt, missing))
        assert e.value.errno in (errno.ENOENT, errno.ENAMETOOLONG), missing
    # "." and ".." are listed like on any file system
    r = subprocess.run(["ls", "-a", os.path.join(mnt, "d0")], capture_output=True,
                       text=True, check=True)
    assert r.stdout.split("\n")[:2] == [".", ".."]


def test_random_preads(tm):
    share, _, mnt = tm
    rng = random.Random(7)
    files = ["random8", "mib_plus_one"]
    fds = {}
    try:
        for f in files:
            fds[f] = (os.open(os.path.join(share, f), os.O_RDONLY),
                      os.open(os.path.join(mnt, f), os.O_RDONLY),
                      os.path.getsize(os.path.join(share, f)))
        for i in range(1000):
            src, dst, size = fds[files[i % 2]]
            kind = i % 5
            if kind == 0:      # anywhere
                off = rng.randrange(0, size)
            elif kind == 1:    # exactly at the end
                off = size
            elif kind == 2:    # across the end
                off = max(0, size - rng.randrange(1, 70000))
            elif kind == 3:    # past the end
                off = size + rng.randrange(1, 4 * MiB)
            else:              # near a 1 MiB boundary
                off = max(0, rng.randrange(1, size // MiB + 2) * MiB - rng.randrange(0, 9))
            length = rng.choice([1, 2, 4095, 4096, 65536, 131072, MiB, MiB + 1,
                                 rng.randrange(1, 3 * MiB)])
            want = os.pread(src, length, off)
            got = os.pread(dst, length, off)
            assert got == want, (files[i % 2], off, length, len(got), len(want))
    finally:
        for src, dst, _ in fds.values():
            os.close(src)
            os.close(dst)


def test_small_and_empty_files(tm):
    _, _, mnt = tm
    with open(os.path.join(mnt, "empty"), "rb") as f:
        assert f.read() == b""
    with open(os.path.join(mnt, "one"), "rb") as f:
        assert f.read() == b"1"
        assert f.read() == b""


def test_sparse_file(tm):
    share, _, mnt = tm
    assert os.path.getsize(os.path.join(mnt, "sparse")) == SPARSE_SIZE
    with open(os.path.join(mnt, "sparse"), "rb") as f, \
            open(os.path.join(share, "sparse"), "rb") as g:
        for off in (0, 4 * GiB - 4096, 4 * GiB - 3, 4 * GiB - 1, 4 * GiB,
                    SPARSE_SIZE - 4, SPARSE_SIZE - MiB, SPARSE_SIZE, SPARSE_SIZE + 1):
            f.seek(off)
            g.seek(off)
            assert f.read(MiB) == g.read(MiB), off
    with open(os.path.join(mnt, "sparse"), "rb") as f:
        f.seek(4 * GiB - 3)
        assert f.read(11) == b"across-4GiB"


def test_symlinks(tm):
    share, outside, mnt = tm
    for name in ("link-inside", "link-dir", "link-abs-out", "link-rel-out",
                 "link-broken", "loop-a", "loop-b"):
        assert os.readlink(os.path.join(mnt, name)) == \
            os.readlink(os.path.join(share, name)), name
    with open(os.path.join(mnt, "link-inside"), "rb") as f:
        assert f.read() == b"1"
    assert sorted(os.listdir(os.path.join(mnt, "link-dir"))) == \
        sorted(os.listdir(os.path.join(share, "d0", "d1")))
    # resolved by the client, relative to the mount: never the host's file
    assert os.path.realpath(os.path.join(mnt, "link-rel-out")) == \
        os.path.join(os.path.dirname(os.path.realpath(mnt)), "outside", "secret")
    with pytest.raises(OSError) as e:
        os.stat(os.path.join(mnt, "loop-a"))
    assert e.value.errno == errno.ELOOP
    with pytest.raises(FileNotFoundError):
        os.stat(os.path.join(mnt, "link-broken"))


def test_writes_fail_erofs(tm):
    _, _, mnt = tm
    p = os.path.join(mnt, "one")
    attempts = {
        "open for write": lambda: os.open(p, os.O_WRONLY),
        "open read-write": lambda: os.open(p, os.O_RDWR),
        "open truncating": lambda: os.open(p, os.O_RDONLY | os.O_TRUNC),
        "create": lambda: os.open(os.path.join(mnt, "new"), os.O_WRONLY | os.O_CREAT, 0o644),
        "mkdir": lambda: os.mkdir(os.path.join(mnt, "newdir")),
        "mknod": lambda: os.mkfifo(os.path.join(mnt, "fifo")),
        "unlink": lambda: os.unlink(p),
        "rmdir": lambda: os.rmdir(os.path.join(mnt, "d0")),
        "rename": lambda: os.rename(p, os.path.join(mnt, "two")),
        "symlink": lambda: os.symlink("one", os.path.join(mnt, "sym")),
        "link": lambda: os.link(p, os.path.join(mnt, "hard")),
        "chmod": lambda: os.chmod(p, 0o600),
        "chown": lambda: os.chown(p, 1, 1),
        "utime": lambda: os.utime(p, (1, 1)),
        "truncate": lambda: os.truncate(p, 0),
        "setxattr": lambda: os.setxattr(p, "user.x", b"1"),
        "removexattr": lambda: os.removexattr(p, "user.x"),
    }
    for what, fn in attempts.items():
        with pytest.raises(OSError) as e:
            fn()
        assert e.value.errno == errno.EROFS, (what, e.value)
    assert os.path.getsize(p) == 1
    with pytest.raises(OSError) as e:
        os.getxattr(p, "user.x")
    assert e.value.errno in (errno.ENOTSUP, errno.ENODATA)


def test_statfs(tm):
    share, _, mnt = tm
    a = os.statvfs(share)
    b = os.statvfs(mnt)
    assert (a.f_bsize, a.f_blocks, a.f_namemax) == (b.f_bsize, b.f_blocks, b.f_namemax)
    assert b.f_flag & os.ST_RDONLY


def test_tar(tm):
    share, _, mnt = tm
    tar = subprocess.Popen(["tar", "c", "-C", mnt, "."], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    listing = subprocess.run(["tar", "t", "--quoting-style=literal"],
                             stdin=tar.stdout, capture_output=True)
    tar.stdout.close()
    err = tar.stderr.read()
    assert tar.wait() == 0, err[:2000]
    assert listing.returncode == 0
    names = sorted(os.path.normpath(n) for n in listing.stdout.split(b"\n")
                   if n and n != b"./")
    assert names == walk(share)


# ----------------------------------------------------------- lookup counts

def memory_cgroup_dir():
    """The directory of this process's memory cgroup (cgroup v1's memory
    controller), or None."""
    try:
        with open("/proc/self/cgroup") as f:
            rel = [line.rstrip("\n").split(":", 2)[2] for line in f
                   if "memory" in line.split(":", 2)[1].split(",")]
        with open("/proc/self/mountinfo") as f:
            roots = [line.split()[4] for line in f
                     if " - cgroup " in line and
                     "memory" in line.split(" - ")[1].split()[2].split(",")]
    except (OSError, IndexError):
        return None
    if not rel or not roots:
        return None
    d = os.path.join(roots[0], rel[0].lstrip("/"))
    return d if os.path.exists(os.path.join(d, "memory.force_empty")) else None


class ForgettingCgroup:
    """A memory cgroup of the test's own, below this process's: the
    dentries and inodes the kernel makes for the lookups of a process run
    in it are charged to it, and forget() reclaims them (and nothing of
    anyone else's), so the kernel sends FORGET for each.  Dropping the
    machine's caches (drop_caches) would do the same to every file system
    on the machine, everyone else's page cache included."""

    PREFIX = "wh-fs-lookups-"

    def __init__(self):
        parent = memory_cgroup_dir()
        if parent is None:
            pytest.skip("no cgroup v1 memory controller to scope the "
                        "kernel's forgetting to this test")
        # those of runs killed before they removed theirs first
        for name in os.listdir(parent):
            pid = name[len(self.PREFIX):]
            if name.startswith(self.PREFIX) and pid.isdigit() and \
                    not os.path.exists("/proc/" + pid):
                try:
                    os.rmdir(os.path.join(parent, name))
                except OSError:
                    pass
        self.dir = os.path.join(parent, self.PREFIX + str(os.getpid()))
        try:
            os.mkdir(self.dir)
        except OSError as e:
            pytest.skip("cannot make a memory cgroup: %s" % e)

    def run(self, *cmd):
        """Run |cmd| inside the cgroup; it must succeed."""
        def enter():
            with open(os.path.join(self.dir, "cgroup.procs"), "w") as f:
                f.write("0\n")
        subprocess.run(cmd, preexec_fn=enter, check=True)

    def forget(self):
        """Reclaim what the cgroup holds (its processes have ended)."""
        with open(os.path.join(self.dir, "memory.force_empty"), "w") as f:
            f.write("0\n")

    def close(self):
        # the kernel moves what is left (its charges) to the parent
        for _ in range(100):
            try:
                os.rmdir(self.dir)
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.05)  # an exited child not yet gone from it
        os.rmdir(self.dir)


# every kind of lookup, as a process of its own: readdirplus, lookup of
# each name, a read of some files and a negative lookup
LOOKUPS = r"""
import os, subprocess, sys
mnt = sys.argv[1]
for dirpath, dirnames, filenames in os.walk(mnt):
    for n in dirnames + filenames:
        os.lstat(os.path.join(dirpath, n))
subprocess.run(["ls", "-lR", mnt], stdout=subprocess.DEVNULL, check=True)
for rel in ("one", "random8", "many/entry 0007", "link-inside"):
    with open(os.path.join(mnt, rel), "rb") as f:
        f.read(4096)
try:
    os.lstat(os.path.join(mnt, "many", "absent"))
    sys.exit("many/absent exists")
except FileNotFoundError:
    pass
"""


def test_lookup_counts_balance(tree, local_mounts):
    """After the kernel drops every cached inode, no node may still hold
    lookups: readdirplus, lookup and forget all count alike.  The lookups
    are made in a memory cgroup of the test's own, so that the kernel is
    made to forget this mount's inodes and no one else's."""
    share, _ = tree
    cg = ForgettingCgroup()
    try:
        m = local_mounts(share, "-v")
        for _ in range(2):
            cg.run(sys.executable, "-c", LOOKUPS, m.mnt)
            cg.forget()
        time.sleep(1.0)  # let the workers take the FORGETs
        cg.forget()
        time.sleep(0.2)
        err = m.check_clean_exit()
    finally:
        cg.close()
    assert "kernel forgot" not in err, err[-3000:]
    line = [l for l in err.splitlines() if "file system freed" in l]
    assert line and "freed: 0 of" in line[-1], line


# ------------------------------------------------------------ invalidation

def read_or_none(p):
    try:
        with open(p, "rb") as f:
            return f.read()
    except OSError:
        return None


def listdir_or_none(p):
    try:
        return sorted(os.listdir(p))
    except OSError:
        return None


def seen_within(pred, limit=1.0):
    """Poll |pred| for up to 2 s; it must come true within |limit| s."""
    start = time.monotonic()
    assert wait_for(pred, 2.0, step=0.01), "change not visible after 2 s"
    took = time.monotonic() - start
    assert took < limit, "change took %.2f s to show" % took


def test_changes_show(workdir, local_mounts):
    src = os.path.join(workdir, "src")
    os.mkdir(src)
    os.mkdir(os.path.join(src, "sub"))
    f = os.path.join(src, "sub", "f.txt")
    with open(f, "w") as fp:
        fp.write("hello\n")
    m = local_mounts(src)
    g = os.path.join(m.mnt, "sub", "f.txt")
    assert read_or_none(g) == b"hello\n"      # cached by the kernel now
    assert os.path.getsize(g) == 6
    assert listdir_or_none(os.path.join(m.mnt, "sub")) == ["f.txt"]
    assert read_or_none(os.path.join(m.mnt, "sub", "later.txt")) is None

    with open(f, "r+") as fp:                 # same size, new bytes
        fp.write("HELLO\n")
    seen_within(lambda: read_or_none(g) == b"HELLO\n")

    with open(f, "w") as fp:                  # another size
        fp.write("hello again, longer\n")
    seen_within(lambda: read_or_none(g) == b"hello again, longer\n" and
                os.path.getsize(g) == 20)

    os.truncate(f, 5)
    seen_within(lambda: os.path.getsize(g) == 5 and read_or_none(g) == b"hello")

    os.rename(f, os.path.join(src, "sub", "renamed.txt"))
    seen_within(lambda: not os.path.exists(g) and
                listdir_or_none(os.path.join(m.mnt, "sub")) == ["renamed.txt"] and
                read_or_none(os.path.join(m.mnt, "sub", "renamed.txt")) == b"hello")

    os.unlink(os.path.join(src, "sub", "renamed.txt"))
    seen_within(lambda: listdir_or_none(os.path.join(m.mnt, "sub")) == [] and
                not os.path.lexists(os.path.join(m.mnt, "sub", "renamed.txt")))

    # a name looked up (and found missing) before it existed
    with open(os.path.join(src, "sub", "later.txt"), "w") as fp:
        fp.write("later\n")
    seen_within(lambda: read_or_none(os.path.join(m.mnt, "sub", "later.txt")) == b"later\n")

    os.mkdir(os.path.join(src, "sub", "newdir"))
    os.symlink("../later.txt", os.path.join(src, "sub", "newdir", "ln"))
    seen_within(lambda: os.path.isdir(os.path.join(m.mnt, "sub", "newdir")) and
                read_or_none(os.path.join(m.mnt, "sub", "newdir", "ln")) == b"later\n")

    os.chmod(os.path.join(src, "sub", "later.txt"), 0o600)
    seen_within(lambda: stat.S_IMODE(os.stat(os.path.join(m.mnt, "sub", "later.txt")).st_mode) == 0o400)

    shutil.rmtree(os.path.join(src, "sub"))
    seen_within(lambda: listdir_or_none(m.mnt) == [])
    m.check_clean_exit()


def test_unchanged_file_keeps_pages(workdir, local_mounts):
    """Opening an unchanged file again costs no read from the host; a
    changed one is read again."""
    src = os.path.join(workdir, "src")
    os.mkdir(src)
    with open(os.path.join(src, "data"), "wb") as fp:
        fp.write(b"x" * MiB)
    m = local_mounts(src)
    p = os.path.join(m.mnt, "data")
    for _ in range(3):
        assert read_or_none(p) == b"x" * MiB
    with open(os.path.join(src, "data"), "r+b") as fp:
        fp.write(b"y")
    seen_within(lambda: read_or_none(p) == b"y" + b"x" * (MiB - 1))
    m.check_clean_exit()


def test_rewrite_under_open_reader(workdir, local_mounts):
    """A file kept open while the host rewrites it in place gives old bytes,
    then EIO (or new bytes): never a read that mixes the two."""
    src = os.path.join(workdir, "src")
    os.mkdir(src)
    path = os.path.join(src, "mix.bin")
    size = 4 * MiB
    piece = 65536
    with open(path, "wb") as fp:
        fp.write(b"a" * size)
    m = local_mounts(src)
    for old_byte, new_byte in ((b"a", b"b"), (b"b", b"a"), (b"a", b"b")):
        def rewrite():
            with open(path, "r+b") as fp:
                for _ in range(0, size, piece):
                    fp.write(new_byte * piece)
                    fp.flush()
                    time.sleep(0.0005)

        seen = []
        with open(os.path.join(m.mnt, "mix.bin"), "rb", buffering=0) as f:
            assert f.read(piece) == old_byte * piece
            w = threading.Thread(target=rewrite)
            w.start()
            try:
                while True:
                    try:
                        chunk = f.read(piece)
                    except OSError as e:
                        assert e.errno == errno.EIO, e
                        seen.append("EIO")
                        break
                    if not chunk:
                        break
                    assert chunk in (b"a" * len(chunk), b"b" * len(chunk)), \
                        "a read mixed two versions of the file"
                    seen.append(chunk[:1])
            finally:
                w.join()
        # within one open: old bytes, then an error or new bytes, never back
        if new_byte in seen:
            assert old_byte not in seen[seen.index(new_byte):], seen
        # a fresh open sees the whole new content
        seen_within(lambda: read_or_none(os.path.join(m.mnt, "mix.bin")) ==
                    new_byte * size, limit=2.0)
    m.check_clean_exit()


# -------------------------------------------------------- timeouts, exits

def test_slow_host_still_works(tree, local_mounts):
    share, _ = tree
    m = local_mounts(share, "--delay-ms", "20", "--timeout-ms", "5000")
    with open(os.path.join(m.mnt, "mib_plus_one"), "rb") as f, \
            open(os.path.join(share, "mib_plus_one"), "rb") as g:
        assert f.read() == g.read()
    m.check_clean_exit()


def test_timeouts_give_eio(workdir, local_mounts):
    """A host that never answers in time: every operation fails with EIO,
    promptly, and the mount still unmounts cleanly."""
    src = os.path.join(workdir, "src")
    os.mkdir(src)
    with open(os.path.join(src, "f"), "w") as fp:
        fp.write("x")
    m = local_mounts(src, "--delay-ms", "400", "--timeout-ms", "100")
    for fn in (lambda: os.stat(os.path.join(m.mnt, "f")),
               lambda: os.listdir(m.mnt),
               lambda: os.statvfs(m.mnt)):
        start = time.monotonic()
        with pytest.raises(OSError) as e:
            fn()
        assert e.value.errno == errno.EIO
        assert time.monotonic() - start < 2.0
    m.check_clean_exit()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_exits_0(tree, local_mounts, sig):
    share, _ = tree
    m = local_mounts(share)
    assert read_or_none(os.path.join(m.mnt, "one")) == b"1"
    m.check_clean_exit(how=sig)


def test_exit_from_a_thread(tree, local_mounts):
    """wh_fs_exit() from a plain thread (no signal) stops the loop: the
    tool exits 0 by itself and unmounts."""
    share, _ = tree
    m = local_mounts(share, "--exit-after-ms", "700")
    assert read_or_none(os.path.join(m.mnt, "one")) == b"1"
    try:
        rc = m.proc.wait(10)
    except subprocess.TimeoutExpired:
        rc = None
    err = m.stderr()
    m.cleanup()
    assert rc == 0, "exit status %r: %s" % (rc, err[-3000:])
    assert not mounted(m.mnt)


def test_signal_while_busy(tree, local_mounts):
    """SIGTERM while readers are busy: the tool still exits 0 and leaves
    no mount behind."""
    share, _ = tree
    m = local_mounts(share, "--delay-ms", "5")
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                with open(os.path.join(m.mnt, "random8"), "rb") as f:
                    while f.read(MiB):
                        pass
            except OSError:
                return

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    try:
        m.check_clean_exit(how=signal.SIGTERM)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
