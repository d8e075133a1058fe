"""An identical re-get of small files: neither side reads them again when
its manifest cache knows their identity, and a change that keeps size and
mtime (but not ctime) is still copied."""
import os
import time

from conftest import get, same_tree


def rchar(pid):
    """Bytes |pid| has read through read()/pread() so far (page cache
    included, unlike read_bytes)."""
    with open("/proc/%d/io" % pid) as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise AssertionError("no rchar in /proc/%d/io" % pid)


def small_tree(base, n=200, size=8192):
    for i in range(n):
        d = os.path.join(base, "d%d" % (i % 4))
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "f%03d" % i), "wb") as f:
            f.write(os.urandom(size - i))
    return sum(size - i for i in range(n))


def rewrite_keeping_size_and_mtime(path):
    st = os.stat(path)
    with open(path, "r+b") as f:
        b = f.read(1)
        f.seek(0)
        f.write(bytes([b[0] ^ 0xff]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = os.stat(path)
    assert after.st_size == st.st_size and after.st_mtime_ns == st.st_mtime_ns


def test_identical_reget_of_small_files_reads_nothing(workdir, hosts):
    share = os.path.join(workdir, "s")
    total = small_tree(share)
    # a file changed within the last second is not remembered (a write in
    # the same timestamp tick would keep its identity)
    time.sleep(1.2)
    h = hosts(share)
    out = os.path.join(workdir, "out")
    cache = os.path.join(workdir, "cc")
    get(h, "", out, cache)
    assert same_tree(share, out)

    before = rchar(h.proc.pid)
    s = get(h, "", out, cache)
    read = rchar(h.proc.pid) - before
    assert s["chunks_fetched"] == 0 and same_tree(share, out)
    # the control traffic and the share's directories, not the files
    assert read < total // 20, (read, total)

    # a host file changed with its size and mtime put back: its ctime
    # moved, so it is read and sent again
    changed = os.path.join(share, "d1", "f005")
    rewrite_keeping_size_and_mtime(changed)
    s = get(h, "", out, cache)
    assert same_tree(share, out)
    assert s["chunks_fetched"] == 1

    # a destination file changed the same way is fixed
    local = os.path.join(out, "d2", "f006")
    rewrite_keeping_size_and_mtime(local)
    s = get(h, "", out, cache)
    assert same_tree(share, out)
    assert s["chunks_fetched"] == 1


def test_small_hashes_survive_a_host_restart(workdir, hosts):
    """The host's manifest cache saves the small-file hashes when it stops
    and reads them back: a restarted host does not read the files again."""
    share = os.path.join(workdir, "s")
    total = small_tree(share, n=50)
    time.sleep(1.2)
    extra = ("--cache-dir", os.path.join(workdir, "hostcache"))
    h = hosts(share, extra=extra)
    out = os.path.join(workdir, "out")
    cache = os.path.join(workdir, "cc")
    get(h, "", out, cache)
    h.stop()
    h2 = hosts(share, extra=extra)
    before = rchar(h2.proc.pid)
    s = get(h2, "", out, cache)
    read = rchar(h2.proc.pid) - before
    assert s["chunks_fetched"] == 0 and same_tree(share, out)
    assert read < total // 10, (read, total)
