"""Opens through the mount: the kernel opens and closes files without asking
the mount (FUSE's no-open mode), and what a user checks still holds: the
bytes are right, an unchanged file keeps its pages across opens, a file
changed on the host shows changed, a file changed while it is read fails
with EIO instead of mixing versions, and opening for writing gives EROFS.
Every test runs twice: as mounted (no-open) and with every OPEN answered
(WH_MOUNT_OPEN_EACH, the mode of kernels without no-open support)."""
import errno
import os
import random
import subprocess
import time

import pytest

from conftest import MiB, Mount, mount_stats, retry_if_caches_dropped, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (FUSE)")

MODES = {"no_open": (), "open_each": ("env", "WH_MOUNT_OPEN_EACH=1")}
NFILES = 30


def reads(st):
    """the reads that came to the mount (not served by the kernel's cache)"""
    return st["reads_direct"] + st["reads_chunked"] + st["reads_small"]


def read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture(params=sorted(MODES))
def mode(request):
    return request.param


@pytest.fixture
def share(workdir):
    rng = random.Random(7)
    share = os.path.join(workdir, "share")
    os.makedirs(os.path.join(share, "d"))
    for i in range(NFILES):
        with open(os.path.join(share, "d", "f%02d" % i), "wb") as f:
            f.write(rng.randbytes(rng.randrange(1, 30000)))
    with open(os.path.join(share, "big.bin"), "wb") as f:
        f.write(rng.randbytes(5 * MiB + 3))
    with open(os.path.join(share, "hello.txt"), "wb") as f:
        f.write(b"hello\n")
    return share


@pytest.fixture
def mount(share, hosts, mkmnt, mode):
    h = hosts(share)
    mnt = mkmnt()
    m = Mount(h, mnt, wrap=MODES[mode])
    yield mnt
    m.close()


def test_reads_right_and_opens_counted(share, mount, mode):
    """Every file reads right, twice; the second time from the kernel's
    cache in either mode (no-open keeps pages across opens as keep_cache
    does).  Without opens the mount saw one OPEN (declined: from then on
    the kernel sends none), with them one per open."""
    names = ["big.bin", "hello.txt"] + \
        [os.path.join("d", "f%02d" % i) for i in range(NFILES)]
    for name in names:
        assert read(os.path.join(mount, name)) == \
            read(os.path.join(share, name)), name
    # every file again (33 reads at least) if the pages were dropped at
    # open; a few may come back when the machine is short of memory, all
    # when something drops the caches (benchmarks do): tried again then

    def again():
        nonlocal after
        before = mount_stats(mount)
        for name in names:
            assert read(os.path.join(mount, name)) == \
                read(os.path.join(share, name)), name
        after = mount_stats(mount)
        n = reads(after) - reads(before)
        return n < len(names) // 4, n
    after = None
    retry_if_caches_dropped(again, "pages were not kept across opens "
                            "(reads that came to the mount)")
    if mode == "no_open":
        assert after["no_open"] == 1
        assert after["opens"] == 1
    else:
        assert after["no_open"] == 0
        assert after["opens"] >= 2 * len(names)


def test_cp_r_same_tree_small_files_ahead(share, mount, workdir, mode):
    out = os.path.join(workdir, "copy")
    subprocess.run(["cp", "-r", os.path.join(mount, "d"), out], check=True)
    r = subprocess.run(["diff", "-r", os.path.join(share, "d"), out],
                       capture_output=True)
    assert r.returncode == 0, r.stdout[:2000]
    st = mount_stats(mount)
    # the first read of a file in the listed directory (the open, with
    # opens) queued its neighbours, which then never needed a READ
    assert st["small_fetched"] >= NFILES // 2
    assert st["reads_direct"] < NFILES // 2


def test_changed_on_host_shows_changed(share, mount):
    src = os.path.join(share, "hello.txt")
    dst = os.path.join(mount, "hello.txt")
    assert read(dst) == b"hello\n"       # now in the kernel's cache
    time.sleep(0.01)                     # a new mtime even on coarse clocks
    with open(src, "r+b") as f:          # same size, new bytes
        f.write(b"HELLO\n")

    def shows(want):
        try:
            return read(dst) == want
        except OSError as e:             # read while it changed
            assert e.errno == errno.EIO
            return False
    assert wait_for(lambda: shows(b"HELLO\n"), 5.0)
    with open(src, "ab") as f:           # a new size
        f.write(b"more\n")
    assert wait_for(lambda: shows(b"HELLO\nmore\n"), 5.0)
    assert os.path.getsize(dst) == len(b"HELLO\nmore\n")


def test_change_while_reading_fails_then_new_open_reads_new(share, mount):
    """A reader whose file changes on the host gets old bytes (from the
    kernel's cache) or EIO, never a new byte; once it failed it keeps
    failing; an open after the change reads the new bytes."""
    src = os.path.join(share, "mix.bin")
    with open(src, "wb") as f:
        f.write(b"a" * (4 * MiB))
    time.sleep(0.2)
    with open(os.path.join(mount, "mix.bin"), "rb", buffering=0) as f:
        assert f.read(65536) == b"a" * 65536
        with open(src, "r+b") as g:
            g.write(b"b" * (4 * MiB))
        time.sleep(0.3)                  # the host's notice has come
        failed = False
        for _ in range(4 * MiB // 65536 + 2):
            try:
                chunk = f.read(65536)
            except OSError as e:
                assert e.errno == errno.EIO
                failed = True
                continue
            assert not failed, "a read after EIO succeeded"
            if not chunk:
                break
            assert chunk == b"a" * len(chunk)
    assert wait_for(lambda: read(os.path.join(mount, "mix.bin")) ==
                    b"b" * (4 * MiB), 5.0)


def test_write_opens_give_erofs(share, mount, mode):
    dst = os.path.join(mount, "hello.txt")
    assert read(dst) == b"hello\n"       # a read-only open came first
    opens = mount_stats(mount)["opens"]
    r = subprocess.run(["sh", "-c", "echo x > '%s'" % dst],
                       capture_output=True)
    assert r.returncode != 0
    assert b"Read-only file system" in r.stderr, r.stderr
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC,
                  os.O_WRONLY | os.O_APPEND):
        with pytest.raises(OSError) as e:
            os.open(dst, flags)
        assert e.value.errno == errno.EROFS, flags
    with pytest.raises(OSError) as e:
        os.open(os.path.join(mount, "new"), os.O_WRONLY | os.O_CREAT, 0o644)
    assert e.value.errno == errno.EROFS
    if mode == "no_open":
        # the mount is read-only: the kernel refuses these itself, and
        # sends no OPEN for them either
        assert mount_stats(mount)["opens"] == opens
    assert read(dst) == b"hello\n"
    assert read(os.path.join(share, "hello.txt")) == b"hello\n"
