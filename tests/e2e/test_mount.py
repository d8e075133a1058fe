"""A shared tree, mounted: everything a user reads matches the host's folder,
and changes on the host show through the mount within a second."""
import ctypes
import errno
import mmap
import os
import random
import stat
import subprocess
import time

import pytest

from conftest import MiB, WH_BIN, retry_if_caches_dropped, wait_for

SPARSE = 5 * 1024 * MiB


@pytest.fixture
def mounted(tree, hosts, mounts, mkmnt):
    share, outside = tree
    h = hosts(share)
    mnt = mkmnt()
    mounts(h, mnt)
    return share, outside, mnt, h


def walk(top):
    """Every path under |top| (bytes, relative), without following links."""
    out = []
    for dirpath, dirnames, filenames in os.walk(os.fsencode(top)):
        rel = os.path.relpath(dirpath, os.fsencode(top))
        for n in dirnames + filenames:
            out.append(os.path.normpath(os.path.join(rel, n)))
    return sorted(out)


def test_diff_equal(mounted):
    share, _, mnt, _ = mounted
    # the fifo is invisible on purpose; the 5 GiB sparse file is checked
    # by targeted reads below (reading it whole would take most of a minute)
    r = subprocess.run(["diff", "-r", "--no-dereference", "-x", "a-fifo",
                        "-x", "sparse", share, mnt], capture_output=True)
    assert r.returncode == 0, r.stdout.decode(errors="replace")[:2000]


def test_special_files_invisible(mounted):
    share, _, mnt, _ = mounted
    assert "a-fifo" not in os.listdir(mnt)
    with pytest.raises(FileNotFoundError):
        os.lstat(os.path.join(mnt, "a-fifo"))


def test_stat_matches(mounted):
    share, _, mnt, _ = mounted
    src_paths = [p for p in walk(share) if p != b"a-fifo"]
    assert src_paths == walk(mnt)
    for rel in src_paths:
        a = os.lstat(os.path.join(os.fsencode(share), rel))
        b = os.lstat(os.path.join(os.fsencode(mnt), rel))
        assert stat.S_IFMT(a.st_mode) == stat.S_IFMT(b.st_mode), rel
        if stat.S_ISLNK(a.st_mode):
            # a Linux symlink is lrwxrwxrwx, through the mount too
            assert stat.S_IMODE(b.st_mode) == 0o777, (rel, oct(b.st_mode))
        else:
            # read-only mount: write bits are cleared
            assert stat.S_IMODE(a.st_mode) & ~0o222 == stat.S_IMODE(b.st_mode), rel
        assert a.st_size == b.st_size, rel
        assert a.st_mtime_ns == b.st_mtime_ns, rel
        assert a.st_ino == b.st_ino, rel
        if stat.S_ISLNK(a.st_mode):
            assert os.readlink(os.path.join(os.fsencode(share), rel)) == \
                os.readlink(os.path.join(os.fsencode(mnt), rel))


def test_tools_work(mounted):
    _, _, mnt, _ = mounted
    for cmd in (["ls", "-lR", mnt], ["find", mnt, "-xdev"],
                ["tar", "cf", "/dev/null", "--exclude=sparse", "-C", mnt, "."],
                ["du", "-s", "--apparent-size", mnt]):
        r = subprocess.run(cmd, capture_output=True)
        assert r.returncode == 0, (cmd, r.stderr[:500])


def test_random_preads(mounted):
    share, _, mnt, _ = mounted
    rng = random.Random(42)
    files = ["random64", "mib_plus_one", "one", "empty"]
    fds = {}
    try:
        for f in files:
            fds[f] = (os.open(os.path.join(share, f), os.O_RDONLY),
                      os.open(os.path.join(mnt, f), os.O_RDONLY),
                      os.path.getsize(os.path.join(share, f)))
        for i in range(1000):
            f = files[i % 2] if i % 10 else files[2 + (i // 10) % 2]
            src, dst, size = fds[f]
            kind = i % 4
            if kind == 0:          # anywhere
                off = rng.randrange(0, size + 1)
            elif kind == 1:        # at the end
                off = size
            elif kind == 2:        # across the end
                off = max(0, size - rng.randrange(1, 5000))
            else:                  # past the end
                off = size + rng.randrange(1, 1 << 20)
            length = rng.choice([1, 7, 4096, 65536, 131072, rng.randrange(1, 3 * MiB)])
            assert os.pread(dst, length, off) == os.pread(src, length, off), (f, off, length)
    finally:
        for src, dst, _ in fds.values():
            os.close(src)
            os.close(dst)


def test_sparse_file(mounted):
    share, _, mnt, _ = mounted
    p = os.path.join(mnt, "sparse")
    assert os.path.getsize(p) == SPARSE
    with open(p, "rb") as f, open(os.path.join(share, "sparse"), "rb") as g:
        for off in (0, 4 * 1024 * MiB - 4096, 4 * 1024 * MiB - 3,
                    SPARSE - 4, SPARSE - MiB, SPARSE):
            f.seek(off)
            g.seek(off)
            assert f.read(MiB) == g.read(MiB), off


def test_copy_big_file(mounted, workdir):
    share, _, mnt, _ = mounted
    out = os.path.join(workdir, "copy")
    subprocess.run(["cp", os.path.join(mnt, "random64"), out], check=True)
    assert subprocess.run(["cmp", out, os.path.join(share, "random64")]).returncode == 0


def test_outside_links_stay_links(mounted):
    _, outside, mnt, _ = mounted
    assert os.readlink(os.path.join(mnt, "link-rel-out")) == "../outside/secret"
    # resolved by the client, relative to the mount: not the host's file
    assert not os.path.exists(os.path.join(mnt, "link-rel-out")) or \
        os.path.realpath(os.path.join(mnt, "link-rel-out")).startswith(
            os.path.dirname(mnt))
    with pytest.raises(OSError) as e:
        os.stat(os.path.join(mnt, "loop-a"))
    assert e.value.errno == errno.ELOOP
    assert not os.path.exists(os.path.join(mnt, "link-broken"))
    assert os.listdir(os.path.join(mnt, "link-dir")) == \
        os.listdir(os.path.join(mnt, "level0", "level1"))


def test_read_only(mounted):
    _, _, mnt, _ = mounted
    for fn in (lambda: open(os.path.join(mnt, "one"), "w"),
               lambda: open(os.path.join(mnt, "new-file"), "w"),
               lambda: os.mkdir(os.path.join(mnt, "newdir")),
               lambda: os.unlink(os.path.join(mnt, "one")),
               lambda: os.rename(os.path.join(mnt, "one"), os.path.join(mnt, "two"))):
        with pytest.raises(OSError) as e:
            fn()
        assert e.value.errno == errno.EROFS


def test_mount_options(mounted):
    """Read-only, and a host's set-id bits and device files are never acted
    on here (the kernel ignores them under nosuid and nodev)."""
    _, _, mnt, _ = mounted
    with open("/proc/self/mountinfo") as f:
        opts = [l.split()[5].split(",") for l in f
                if l.split()[4] == os.path.realpath(mnt)]
    assert opts, "the mount is not in mountinfo"
    assert {"ro", "nosuid", "nodev"} <= set(opts[-1]), opts[-1]


def test_second_mount_refused(mounted, workdir):
    """A second mount on the same mount point would hide the first (and
    the next unmount would take away the wrong one): refused, and the
    first goes on working."""
    share, _, mnt, h = mounted
    cache = os.path.join(workdir, "cache2")
    r = subprocess.run([WH_BIN, "mount", h.code, mnt, "--peer", h.addr,
                        "--cache-dir", cache], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1, r
    assert "is a wormhole mount already" in r.stderr, r.stderr
    with open("/proc/self/mountinfo") as f:
        here = [l for l in f if l.split()[4] == os.path.realpath(mnt)]
    assert len(here) == 1, here
    names = os.listdir(mnt)  # (the special files are not shown)
    assert names and set(names) <= set(os.listdir(share))


def read_or_none(p):
    try:
        with open(p, "rb") as f:
            return f.read()
    except OSError:
        return None


def seen_within(pred, limit=1.0):
    """Poll |pred| every 20 ms for up to 2 s; return how long it took."""
    start = time.monotonic()
    assert wait_for(pred, 2.0), "change not visible through the mount after 2 s"
    took = time.monotonic() - start
    assert took < limit, "change took %.2f s to show" % took
    return took


def test_host_changes_show(small_share, hosts, mounts, mkmnt):
    h = hosts(small_share)
    mnt = mkmnt()
    mounts(h, mnt)
    src = os.path.join(small_share, "hello.txt")
    dst = os.path.join(mnt, "hello.txt")
    assert read_or_none(dst) == b"hello\n"   # now cached by the kernel

    with open(src, "w") as f:                 # same size, new bytes
        f.write("HELLO\n")
    seen_within(lambda: read_or_none(dst) == b"HELLO\n")

    with open(src, "w") as f:                 # new size
        f.write("hello again, longer\n")
    seen_within(lambda: read_or_none(dst) == b"hello again, longer\n")

    os.truncate(src, 5)
    seen_within(lambda: read_or_none(dst) == b"hello" and os.path.getsize(dst) == 5)

    os.rename(src, os.path.join(small_share, "renamed.txt"))
    seen_within(lambda: not os.path.exists(dst) and
                read_or_none(os.path.join(mnt, "renamed.txt")) == b"hello")

    os.unlink(os.path.join(small_share, "renamed.txt"))
    seen_within(lambda: "renamed.txt" not in os.listdir(mnt))

    with open(os.path.join(small_share, "created.txt"), "w") as f:
        f.write("new\n")
    seen_within(lambda: read_or_none(os.path.join(mnt, "created.txt")) == b"new\n")

    os.mkdir(os.path.join(small_share, "d"))
    seen_within(lambda: os.path.isdir(os.path.join(mnt, "d")))
    with open(os.path.join(small_share, "d", "inner"), "w") as f:
        f.write("inner\n")
    seen_within(lambda: read_or_none(os.path.join(mnt, "d", "inner")) == b"inner\n")


def resident_pages(path):
    """How many of |path|'s pages are in the page cache (mincore)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                          ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value)
        pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
        vec = ctypes.create_string_buffer(pages)
        assert libc.mincore(addr, size, vec) == 0
        libc.munmap(addr, size)
        return sum(b & 1 for b in vec.raw)
    finally:
        os.close(fd)


def test_unchanged_file_keeps_page_cache(small_share, hosts, mounts, mkmnt):
    """An unchanged file keeps its pages in the kernel cache across opens;
    a changed one loses them."""
    h = hosts(small_share)
    mnt = mkmnt()
    mounts(h, mnt)
    p = os.path.join(mnt, "data.bin")
    pages = (4 * MiB) // mmap.PAGESIZE

    def kept():
        with open(p, "rb") as f:
            f.read()
        # a new open (mincore opens it again) keeps what the first one read
        n = resident_pages(p)
        return n == pages, n
    retry_if_caches_dropped(kept, "pages resident after a new open, of %d"
                            % pages)
    with open(os.path.join(small_share, "data.bin"), "r+b") as f:
        f.write(b"changed")
    seen_within(lambda: resident_pages(p) == 0)


def test_change_under_open_reader(small_share, hosts, mounts, mkmnt):
    """A reader never gets a silent mix of old and new bytes."""
    src = os.path.join(small_share, "mix.bin")
    with open(src, "wb") as f:
        f.write(b"a" * (4 * MiB))
    h = hosts(small_share)
    mnt = mkmnt()
    mounts(h, mnt)
    with open(os.path.join(mnt, "mix.bin"), "rb", buffering=0) as f:
        first = f.read(65536)
        assert first == b"a" * 65536
        with open(src, "r+b") as g:
            g.write(b"b" * (4 * MiB))
        time.sleep(0.3)
        try:
            while True:
                chunk = f.read(65536)
                if not chunk:
                    break
                # served from the kernel's cache it is all old; any new
                # byte would have to come with an error instead
                assert chunk == b"a" * len(chunk)
        except OSError as e:
            assert e.errno == errno.EIO
    with open(os.path.join(mnt, "mix.bin"), "rb") as f:
        assert f.read() == b"b" * (4 * MiB)


def test_statfs(mounted):
    share, _, mnt, _ = mounted
    a = os.statvfs(share)
    b = os.statvfs(mnt)
    assert a.f_blocks == b.f_blocks and a.f_bsize == b.f_bsize
    assert b.f_flag & os.ST_RDONLY
