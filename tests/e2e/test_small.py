"""`wormhole get` of many small files: several to a request (GET_SMALL),
and the per-file path with a host that does not offer it."""
import glob
import os
import re
import stat
import threading
import time

import pytest

from conftest import MiB, get, same_tree, wait_for

SMALL_MAX = 256 * 1024
# the modes a destination file must get whatever the umask and the order
# of writes; set-id bits are dropped
MODES = {"m666": 0o666, "m444": 0o444, "m4755": 0o4755, "m2711": 0o2711, "m600": 0o600}

def make_tree(share):
    """Small files of many sizes (empty, one byte, at and just over the
    limit) in nested directories, a large file, a link; returns the count
    of regular files."""
    files = 0
    for d in range(4):
        for sub in ("", "a", os.path.join("a", "b")):
            p = os.path.join(share, "d%d" % d, sub)
            os.makedirs(p, exist_ok=True)
            for i in range(40):
                with open(os.path.join(p, "f%02d" % i), "wb") as f:
                    f.write(os.urandom((i * 997) % 12000))
                files += 1
    for name, size in (("empty", 0), ("one", 1), ("edge", SMALL_MAX),
                       ("over", SMALL_MAX + 1)):
        with open(os.path.join(share, name), "wb") as f:
            f.write(os.urandom(size))
        files += 1
    os.chmod(os.path.join(share, "one"), 0o604)
    for name, mode in MODES.items():
        with open(os.path.join(share, name), "wb") as f:
            f.write(b"mode %o" % mode)
        os.chmod(os.path.join(share, name), mode)
        files += 1
    os.utime(os.path.join(share, "one"), ns=(1, 1_600_000_000_987_654_321))
    with open(os.path.join(share, "d1", "big"), "wb") as f:
        f.write(os.urandom(6 * MiB))
    os.chmod(os.path.join(share, "d1", "big"), 0o6755)  # fetched by chunks
    files += 1
    os.symlink("d1/big", os.path.join(share, "latest"))
    os.makedirs(os.path.join(share, "emptydir"))
    return files


def requests_served(h, clients):
    """The requests the host served, from its log, once |clients| have
    left."""
    pat = re.compile(r"disconnected.*\((\d+) requests")
    assert wait_for(lambda: len(pat.findall(h.stderr())) >= clients, 10), h.stderr()
    return [int(n) for n in pat.findall(h.stderr())]


# how a small file gets its name: linked from an unnamed file (as root, by
# AT_EMPTY_PATH; without CAP_DAC_READ_SEARCH, by its /proc link), or
# written under a temporary name and renamed
HOW = {
    "unnamed": ((), None),
    "unnamed-proc": (("setpriv", "--bounding-set=-dac_read_search"), None),
    "renamed": ((), {"WH_GET_NO_TMPFILE": "1"}),
}


@pytest.mark.parametrize("how", sorted(HOW))
def test_tree_of_small_files_batched(how, workdir, hosts):
    share = os.path.join(workdir, "s")
    files = make_tree(share)
    h = hosts(share)
    out = os.path.join(workdir, "out")
    wrap, env = HOW[how]
    trace = os.path.join(workdir, "trace")

    def run(strace=()):
        e = dict(env or {})
        if strace and "ASAN_OPTIONS" in os.environ:
            # LeakSanitizer cannot work under ptrace
            e["ASAN_OPTIONS"] = os.environ["ASAN_OPTIONS"] + ":detect_leaks=0"
        return get(h, "", out, os.path.join(workdir, "cc"),
                   wrap=(*strace, *wrap), env=e or None)

    # one file per thread (-ff), so that no call is split across lines
    s = run(("strace", "-ff", "-qq", "-s", "4096", "-o", trace,
             "-e", "trace=linkat,rename,renameat,renameat2"))
    assert same_tree(share, out)
    assert s["files"] == files
    calls = []
    for t in glob.glob(trace + ".*"):
        with open(t) as f:
            # (the cache's own files are renamed into place too)
            calls += [l for l in f
                      if l.rstrip().endswith("= 0") and '"%s/' % out in l]
    linked = sum("linkat(" in l for l in calls)
    renamed = len(calls) - linked
    # the symbolic link and the files over the small limit ("over",
    # "d1/big") are renamed into place in any case
    if how == "renamed":
        assert linked == 0 and renamed == files + 1, (linked, renamed)
    else:
        assert linked == files - 2 and renamed == 3, (linked, renamed)
        # (since Linux 6.10 the opener may use AT_EMPTY_PATH without it)
        by_proc = sum("/proc/self/fd/" in l for l in calls)
        assert by_proc in ((0, linked) if how == "unnamed-proc" else (0,))
    for name in ["one", "d0/f03", "d1/a/b/f00", "d1/big"] + list(MODES):
        a = os.stat(os.path.join(share, name))
        b = os.stat(os.path.join(out, name))
        # the host's mode, but no set-id bits (a program from the peer
        # must not run with this machine's owner's rights)
        want = a.st_mode & ~(stat.S_ISUID | stat.S_ISGID)
        assert b.st_mode == want and a.st_mtime_ns == b.st_mtime_ns, name
    for d, _, names in os.walk(out):
        assert not [n for n in names if n.startswith(".")], d
    # far fewer requests than files: 64 to a request
    assert requests_served(h, 1)[0] < files // 4
    # again: nothing crosses the wire, every file checked by its hash
    s = run()
    assert s["chunks_fetched"] == 0 and s["wire_bytes"] == 0
    assert s["files"] == files and same_tree(share, out)
    # one file changed at the destination, one at the host: only they come
    with open(os.path.join(out, "d2", "a", "f07"), "r+b") as f:
        first = f.read(1)[0]  # random: a fixed byte might be it already
        f.seek(0)
        f.write(bytes([first ^ 0xFF]))
    with open(os.path.join(share, "d3", "f09"), "wb") as f:
        f.write(b"new content")
    s = run()
    assert same_tree(share, out)
    assert s["chunks_fetched"] == 2
    assert s["wire_bytes"] == os.path.getsize(os.path.join(share, "d2", "a", "f07")) + 11


def test_old_host_one_file_at_a_time(workdir, hosts):
    """A host without the SMALL capability gets the per-file requests."""
    share = os.path.join(workdir, "s")
    files = make_tree(share)
    h = hosts(share, wrap=("env", "WH_HOST_NO_SMALL=1"))
    out = os.path.join(workdir, "out")
    s = get(h, "", out, os.path.join(workdir, "cc"))
    assert same_tree(share, out) and s["files"] == files
    assert requests_served(h, 1)[0] >= 2 * files
    s = get(h, "", out, os.path.join(workdir, "cc"))
    assert s["chunks_fetched"] == 0 and same_tree(share, out)


def test_small_file_changing_on_the_host(workdir, hosts):
    """Files replaced while the get runs come out whole, as one of the
    versions the host had (never a mix, never stale bytes under a newer
    version), or the get says which file changed.  One of them moves back
    and forth across the batch limit."""
    share = os.path.join(workdir, "s")
    os.makedirs(share)
    for i in range(300):
        with open(os.path.join(share, "f%03d" % i), "wb") as f:
            f.write(os.urandom(4000))
    versions = {
        "w1": [bytes([65 + k]) * (1000 + 3000 * k) for k in range(4)],
        "w2": [bytes([97 + k]) * (SMALL_MAX - 2 + 200 * k) for k in range(4)],
    }
    for name, vs in versions.items():
        with open(os.path.join(share, name), "wb") as f:
            f.write(vs[0])
    stop = threading.Event()

    def writer(name, vs):
        tmp = os.path.join(workdir, name + ".tmp")  # outside the share
        k = 0
        while not stop.is_set():
            k = (k + 1) % len(vs)
            with open(tmp, "wb") as f:
                f.write(vs[k])
            os.rename(tmp, os.path.join(share, name))
            time.sleep(0.001)

    threads = [threading.Thread(target=writer, args=kv) for kv in versions.items()]
    for t in threads:
        t.start()
    h = hosts(share)
    try:
        for run in range(5):
            out = os.path.join(workdir, "out%d" % run)
            r = get(h, "", out, os.path.join(workdir, "cc"), check=False)
            if r.returncode != 0:
                assert "changed on the host" in r.stderr, r.stderr
                continue
            for i in range(300):
                name = "f%03d" % i
                assert open(os.path.join(out, name), "rb").read() == \
                    open(os.path.join(share, name), "rb").read()
            for name, vs in versions.items():
                got = open(os.path.join(out, name), "rb").read()
                assert got in vs, (name, len(got))
    finally:
        stop.set()
        for t in threads:
            t.join()
