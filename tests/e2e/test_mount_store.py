"""The client's chunk store keeps its limit while it is open: a mount that
reads more than --cache-mb in one session is evicted as it goes (not only
at unmount), what it reads is still right, and what was evicted is
fetched again when read again; and the name files of references go with
them, however many gets ran."""
import hashlib
import os
import random
import shutil
import tempfile
import threading

import pytest

from conftest import MiB, get, sha256, wait_for

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (FUSE)")

LIMIT_MB = 8
FILES = 5
SIZE = 8 * MiB  # 40 MiB read in all, five times the limit


def disk_use(d):
    """What |d| takes on the disk: its files' and directories' blocks."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(d):
        for n in dirnames + filenames:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_blocks * 512
            except FileNotFoundError:
                pass  # evicted while we looked
    return total


@pytest.fixture(scope="module")
def share():
    d = tempfile.mkdtemp(prefix="wh-mstore-")
    src = os.path.join(d, "share")
    os.mkdir(src)
    rng = random.Random(7)
    sums = {}
    for i in range(FILES):
        name = "f%d.bin" % i
        data = rng.randbytes(SIZE)
        with open(os.path.join(src, name), "wb") as f:
            f.write(data)
        sums[name] = hashlib.sha256(data).hexdigest()
    yield src, sums
    shutil.rmtree(d, ignore_errors=True)


@needs_root
def test_store_bounded_while_mounted(share, hosts, mounts, mkmnt):
    src, sums = share
    h = hosts(src)
    mnt = mkmnt()
    m = mounts(h, mnt, extra=("--cache-mb", str(LIMIT_MB),
                              "--ram-cache-mb", "8"))
    cache = m.cache
    limit = LIMIT_MB * MiB
    most = [0]
    done = threading.Event()

    def watch():
        while not done.is_set():
            most[0] = max(most[0], disk_use(cache))
            done.wait(0.02)

    t = threading.Thread(target=watch)
    t.start()
    try:
        for name in sorted(sums):
            assert sha256(os.path.join(mnt, name)) == sums[name], name
    finally:
        done.set()
        t.join()
    assert os.path.ismount(mnt)
    # the store settles under its limit while still mounted (the
    # directories chunks/ab/ and the log's dead records are what the
    # slack is for: the limit counts the entries and their live records)
    assert wait_for(lambda: disk_use(cache) <= limit + 1 * MiB, 20), \
        "the store holds %d bytes, its limit is %d" % (disk_use(cache), limit)
    # and never went far past it: at most twice the limit, and the chunks
    # being written (eight fetches of at most 4 MiB)
    assert most[0] <= 2 * limit + 8 * 4 * MiB + 1 * MiB, most[0]
    assert most[0] < FILES * SIZE / 2
    # what was evicted is fetched again, and right: the first file, read
    # again once the kernel's pages of it are gone
    name = sorted(sums)[0]
    with open(os.path.join(mnt, name), "rb") as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    assert sha256(os.path.join(mnt, name)) == sums[name]
    assert wait_for(lambda: disk_use(cache) <= limit + 1 * MiB, 20)


def test_name_files_go_with_their_references(share, hosts, workdir):
    """A file got, deleted and got again, many times over: each get names
    a new destination file (a new inode) for the store's references; the
    old ones are found not to hold and their name files go, so
    chunk-names/ does not grow with the number of gets."""
    src, sums = share
    h = hosts(src)
    cache = os.path.join(workdir, "cache")
    dst = os.path.join(workdir, "out.bin")
    name = sorted(sums)[0]
    for _ in range(6):
        get(h, name, dst, cache)
        assert sha256(dst) == sums[name]
        os.unlink(dst)
    names = os.listdir(os.path.join(cache, "chunk-names"))
    assert len(names) <= 1, names
