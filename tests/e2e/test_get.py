"""`wormhole get`: verified, deduplicated, resumable bulk copies."""
import json
import os
import struct
import random
import signal
import stat
import subprocess
import time

import pytest

from conftest import WH_BIN, MiB, get, same_tree, wait_for


@pytest.fixture
def share(workdir):
    s = os.path.join(workdir, "share")
    os.makedirs(os.path.join(s, "renders", "shot042"))
    with open(os.path.join(s, "renders", "shot042", "take1.mov"), "wb") as f:
        f.write(os.urandom(24 * MiB))
    with open(os.path.join(s, "renders", "notes.txt"), "w") as f:
        f.write("notes\n")
    os.chmod(os.path.join(s, "renders", "notes.txt"), 0o640)
    os.utime(os.path.join(s, "renders", "notes.txt"), ns=(1, 1_500_000_000_123_456_789))
    open(os.path.join(s, "renders", "empty"), "w").close()
    os.symlink("shot042/take1.mov", os.path.join(s, "renders", "latest"))
    return s

def test_bad_destination_says_what_is_wrong(share, hosts, workdir):
    """A destination whose directory does not exist, or a directory copied
    onto a file: exit 1 with a message in the user's own terms (no
    temporary names), and nothing is changed."""
    h = hosts(share)
    cache = os.path.join(workdir, "cc")
    for remote in ("renders/notes.txt", "renders/shot042/take1.mov"):
        dst = os.path.join(workdir, "nope", "deeper", "f")
        r = get(h, remote, dst, cache, check=False)
        assert r.returncode == 1, r
        assert "cannot create '%s': its directory does not exist" % dst in r.stderr, r.stderr
        assert not os.path.exists(os.path.join(workdir, "nope"))
    afile = os.path.join(workdir, "afile")
    with open(afile, "w") as f:
        f.write("mine\n")
    for remote in ("renders", ""):
        r = get(h, remote, afile, cache, check=False)
        assert r.returncode == 1, r
        assert "onto '%s': that is not a directory" % afile in r.stderr, r.stderr
        assert open(afile).read() == "mine\n"


def test_tree_and_metadata(share, hosts, workdir):
    h = hosts(share, extra=["--cache-dir", os.path.join(workdir, "hc")])
    out = os.path.join(workdir, "out")
    os.mkdir(out)
    s = get(h, "renders", out, os.path.join(workdir, "cc"))
    dst = os.path.join(out, "renders")
    assert same_tree(os.path.join(share, "renders"), dst)
    assert s["files"] == 3 and s["bytes"] == 24 * MiB + 6
    assert s["chunks_fetched"] == s["chunks"] and s["wire_bytes"] == 24 * MiB + 6
    a = os.stat(os.path.join(share, "renders", "notes.txt"))
    b = os.stat(os.path.join(dst, "notes.txt"))
    assert a.st_mode == b.st_mode and a.st_mtime_ns == b.st_mtime_ns
    assert os.readlink(os.path.join(dst, "latest")) == "shot042/take1.mov"
    # no temporary names left behind
    assert not [n for n in os.listdir(os.path.join(dst, "shot042")) if n.startswith(".")]


def test_identical_reget_sends_no_chunk(share, hosts, workdir):
    h = hosts(share)
    cache = os.path.join(workdir, "cc")
    out = os.path.join(workdir, "copy")
    os.mkdir(out)
    dst = os.path.join(out, "renders")
    first = get(h, "renders", out, cache)   # like cp: into the directory
    again = get(h, "renders", out, cache)
    assert first["chunks_fetched"] > 0
    assert again["chunks_fetched"] == 0 and again["wire_bytes"] == 0
    assert same_tree(os.path.join(share, "renders"), dst)
    # with an empty store, the destination itself supplies every chunk
    again = get(h, "renders", out, os.path.join(workdir, "empty-cache"))
    assert again["chunks_fetched"] == 0


def seeded_copy(share, hosts, workdir, seed, env=None):
    """The share's big file rewritten with 24 MiB from random.Random(|seed|),
    served, and got once (with |env|) into a destination that the client's
    store, returned as cache, then knows.  Seeded, not random data: after an edit,
    content-defined boundaries fall back in step within a chunk or two most
    of the time, but for a few percent of random files only after many
    chunks, which would make the tests' counts flaky.  Returns (rng, src,
    host, dst, cache), rng where the file's bytes left it."""
    rng = random.Random(seed)
    src = os.path.join(share, "renders", "shot042", "take1.mov")
    with open(src, "wb") as f:
        f.write(rng.randbytes(24 * MiB))
    h = hosts(share)
    dst = os.path.join(workdir, "take1.mov")
    cache = os.path.join(workdir, "c")
    get(h, "renders/shot042/take1.mov", dst, cache, env=env)
    return rng, src, h, dst, cache


def change_a_tenth(path, rng):
    """A tenth of |path| overwritten in place, from its middle on, with
    bytes from |rng|; returns its size."""
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size // 2)
        f.write(rng.randbytes(size // 10))
    return size


def test_ten_percent_change(share, hosts, workdir):
    rng, src, h, dst, _ = seeded_copy(share, hosts, workdir, 20261201)
    assert open(dst, "rb").read() == open(src, "rb").read()
    size = change_a_tenth(src, rng)
    s = get(h, "renders/shot042/take1.mov", dst, os.path.join(workdir, "c2"))
    assert open(dst, "rb").read() == open(src, "rb").read()
    # about 10% changed: the chunks covering it, at most a few more
    assert 0 < s["wire_bytes"] <= size // 10 + 3 * 4 * MiB
    assert s["chunks_fetched"] < s["chunks"] / 2, s


def test_one_byte_insertion(share, hosts, workdir):
    h = hosts(share)
    src = os.path.join(share, "renders", "shot042", "take1.mov")
    dst = os.path.join(workdir, "take1.mov")
    get(h, "renders/shot042/take1.mov", dst, os.path.join(workdir, "c1"))
    data = open(src, "rb").read()
    with open(src, "wb") as f:
        f.write(b"!" + data)
    s = get(h, "renders/shot042/take1.mov", dst, os.path.join(workdir, "c2"))
    assert open(dst, "rb").read() == b"!" + data
    assert s["chunks_fetched"] <= 2


@pytest.mark.parametrize("io,copy", [("uring", "kernel"), ("posix", "kernel"),
                                     ("uring", "plain"), ("posix", "plain")])
def test_known_destination_copied_unread(io, copy, share, hosts, workdir):
    """A destination whose manifest the client remembers, unchanged since,
    gives its chunks without being hashed again: in the kernel or through
    reads and writes (WH_IO_COPY), on either I/O backend, aligned (10%
    changed in place) or not (a byte inserted)."""
    env = {"WH_IO": io, "WH_IO_COPY": copy}
    rng, src, h, dst, cache = seeded_copy(share, hosts, workdir, 20261201,
                                          env=env)
    change_a_tenth(src, rng)
    s = get(h, "renders/shot042/take1.mov", dst, cache, env=env)
    assert open(dst, "rb").read() == open(src, "rb").read()
    assert s["chunks_from_destination"] > s["chunks"] / 2, s
    data = open(src, "rb").read()
    with open(src, "wb") as f:
        f.write(b"!" + data)
    s = get(h, "renders/shot042/take1.mov", dst, cache, env=env)
    assert open(dst, "rb").read() == b"!" + data
    assert s["chunks_fetched"] <= 2, s
    assert s["chunks_from_destination"] == s["chunks"] - s["chunks_fetched"], s


def test_destination_edited_behind_the_clients_back(share, hosts, workdir):
    """Bytes of the destination changed after the get that wrote it, its
    size and mtime put back: the ctime moved, so the client does not take
    its remembered manifest, hashes the file, and fetches the chunk that
    differs instead of copying it."""
    _, src, h, dst, cache = seeded_copy(share, hosts, workdir, 7)
    st = os.stat(dst)
    with open(dst, "r+b") as f:
        f.seek(5 * MiB)
        f.write(b"\xff" * 4096)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(dst).st_size == st.st_size
    # a new version on the host, the same bytes but for its last one
    with open(src, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        f.write(b"\x00")
    s = get(h, "renders/shot042/take1.mov", dst, cache)
    assert open(dst, "rb").read() == open(src, "rb").read()
    assert s["chunks_fetched"] >= 2, s   # the edited chunk and the last


@pytest.mark.parametrize("how", ["edited", "cut shorter"])
def test_destination_changed_during_the_unhashed_copy(how, share, hosts,
                                                      workdir):
    """The old destination, known and so copied without being hashed,
    changed after its identity was taken and before its chunks are copied
    (the WH_GET_TEST_PAUSE hook holds the get there): bytes edited in
    place (its size and mtime put back), copied in the kernel at the same
    offsets; or the file cut shorter, its chunks read and written at other
    offsets (a byte inserted on the host).  The identity
    checked again before the rename differs, the copy is started again,
    hashes the file this time and fetches what differs; the result is the
    host's bytes exactly."""
    _, src, h, dst, cache = seeded_copy(share, hosts, workdir, 11)
    if how == "edited":
        with open(src, "r+b") as f:  # something to fetch
            f.seek(-1, os.SEEK_END)
            f.write(b"\x00")
    else:
        data = open(src, "rb").read()
        with open(src, "wb") as f:
            f.write(b"!" + data)
    flag = os.path.join(workdir, "paused")
    p = subprocess.Popen([WH_BIN, "get", h.code, "renders/shot042/take1.mov",
                          dst, "--peer", h.addr, "--cache-dir", cache, "--json"],
                         env=dict(os.environ, WH_GET_TEST_PAUSE=flag),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: os.path.exists(flag) or p.poll() is not None, 60)
    assert p.poll() is None, p.communicate()
    st = os.stat(dst)
    if how == "edited":
        with open(dst, "r+b") as f:  # in chunks the copy takes unhashed
            for off in (1 * MiB, 9 * MiB, 17 * MiB):
                f.seek(off)
                f.write(b"\xff" * 4096)
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
    else:
        os.truncate(dst, 10 * MiB)
    os.unlink(flag)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert open(dst, "rb").read() == open(src, "rb").read()
    s = json.loads(out)
    if how == "edited":
        assert s["chunks_fetched"] >= 4, s  # the three edited and the last
    else:
        assert s["chunks_fetched"] >= s["chunks"] / 2, s  # past 10 MiB


@pytest.mark.parametrize("settled", [True, False])
def test_unknown_destination_hashed_once(settled, share, hosts, workdir):
    """A destination the client did not write (a plain copy, its manifest
    not in the cache) is hashed; if it had not changed for a second before
    that, and is unchanged after, its chunks are then copied unread like
    a known one's (the WH_GET_TEST_PAUSE hook holds such a get, and only
    such a get), and the identity checked before the rename catches an
    edit made meanwhile: the copy starts again, hashes the file again and
    fetches what differs.  One changed just before the get is hashed and
    its chunks verified as they are used (no pause)."""
    rng = random.Random(5)
    src = os.path.join(share, "renders", "shot042", "take1.mov")
    with open(src, "wb") as f:
        f.write(rng.randbytes(24 * MiB))
    dst = os.path.join(workdir, "take1.mov")
    with open(src, "rb") as a, open(dst, "wb") as b:
        b.write(a.read())
    if settled:
        time.sleep(1.2)
    h = hosts(share)
    with open(src, "r+b") as f:  # something to fetch
        f.seek(-1, os.SEEK_END)
        f.write(b"\x00")
    flag = os.path.join(workdir, "paused")
    p = subprocess.Popen([WH_BIN, "get", h.code, "renders/shot042/take1.mov",
                          dst, "--peer", h.addr, "--cache-dir",
                          os.path.join(workdir, "c"), "--json"],
                         env=dict(os.environ, WH_GET_TEST_PAUSE=flag),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: os.path.exists(flag) or p.poll() is not None, 60)
    if settled:
        assert p.poll() is None, p.communicate()
        st = os.stat(dst)
        with open(dst, "r+b") as f:  # in chunks the copy takes unread
            for off in (1 * MiB, 9 * MiB, 17 * MiB):
                f.seek(off)
                f.write(b"\xff" * 4096)
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.unlink(flag)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert not os.path.exists(flag)
    assert open(dst, "rb").read() == open(src, "rb").read()
    s = json.loads(out)
    if settled:
        assert s["chunks_fetched"] >= 4, s  # the three edited and the last
    else:
        assert 1 <= s["chunks_fetched"] <= 2, s
        assert s["chunks_from_destination"] == s["chunks"] - s["chunks_fetched"], s


def store_entries(cache):
    """The store's chunks (their bytes) and live references (to files'
    bytes), as its log (chunks.log: 128-byte records) names them."""
    data = []
    for d, _, files in os.walk(os.path.join(cache, "chunks")):
        data += [os.path.join(d, f) for f in files if not f.endswith(".tmp")]
    live = {}
    try:
        log = open(os.path.join(cache, "chunks.log"), "rb").read()
    except FileNotFoundError:
        log = b""
    for i in range(0, len(log) - 127, 128):
        r = log[i:i + 128]
        magic, kind, deltype = struct.unpack_from("<IBB", r)
        if magic != 0x314c4857:
            continue
        h, name, off = r[16:48], r[80:96], struct.unpack_from("<Q", r, 48)[0]
        t = deltype if kind == 3 else kind
        key = (h, t) if t == 1 else (h, t, name, off)
        if kind == 3:
            live.pop(key, None)
        else:
            live[key] = True
    return data, [k for k in live if k[1] == 2]


def start_big_get(workdir, hosts, *extra):
    """A share with a 128 MiB file, and a get of it (one chunk at a time)
    that has written a few chunks; returns (host, get process, dst,
    partial, cache)."""
    share = os.path.join(workdir, "s")
    os.mkdir(share)
    with open(os.path.join(share, "big"), "wb") as f:
        f.write(os.urandom(128 * MiB))
    h = hosts(share)
    cache = os.path.join(workdir, "cc")
    dst = os.path.join(workdir, "big")
    partial = os.path.join(workdir, ".big.wh-partial")
    p = subprocess.Popen([WH_BIN, "get", h.code, "big", dst, "--peer", h.addr,
                          "--cache-dir", cache, "--parallel", "1", *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    assert wait_for(lambda: len(store_entries(cache)[1]) >= 3 or p.poll() is not None,
                    60, 0.002)
    return h, p, dst, partial, cache


def test_killed_get_resumes(workdir, hosts):
    # each chunk written into the partial file is noted in the store
    h, p, dst, partial, cache = start_big_get(workdir, hosts)
    share = h.share
    p.send_signal(signal.SIGKILL)
    p.communicate()
    assert not os.path.exists(dst), "the get finished before it was killed"
    assert os.path.exists(partial)   # kept, under its temporary name only
    # a scribble over the first chunk there: checked, not trusted
    with open(partial, "r+b") as f:
        f.seek(10)
        b = f.read(1)
        f.seek(10)
        f.write(bytes([b[0] ^ 0xff]))
    s = get(h, "big", dst, cache)
    assert open(dst, "rb").read() == open(os.path.join(share, "big"), "rb").read()
    assert not os.path.exists(partial)
    assert s["chunks_resumed"] >= 2, s
    assert s["corrupt_chunks_discarded"] == 1, s
    assert 0 < s["chunks_fetched"] < s["chunks"], s
    assert s["chunks_fetched"] + s["chunks_resumed"] == s["chunks"], s
    # the bytes were written once, into the destination: the store holds
    # references to them, no copy
    data, refs = store_entries(cache)
    assert data == [] and len(refs) == s["chunks"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_get_says_so_and_resumes(sig, workdir, hosts):
    """Ctrl-C (or a SIGTERM) stops a get with a word on what becomes of
    it, dies of the signal, keeps the partial file, and the same get
    resumes it."""
    h, p, dst, partial, cache = start_big_get(workdir, hosts)
    p.send_signal(sig)
    _, err = p.communicate(timeout=30)
    assert p.returncode == -sig, (p.returncode, err)
    assert "interrupted; what was copied is kept" in err, err
    assert not os.path.exists(dst) and os.path.exists(partial)
    s = get(h, "big", dst, cache)
    assert open(dst, "rb").read() == open(os.path.join(h.share, "big"), "rb").read()
    assert s["chunks_resumed"] >= 2 and s["chunks_fetched"] < s["chunks"], s


def test_second_get_into_the_same_destination(workdir, hosts):
    """While one get writes a file, another into the same destination
    fails with a clear message, leaves the first's partial file alone,
    and the first completes."""
    h, p, dst, partial, cache = start_big_get(workdir, hosts)
    p.send_signal(signal.SIGSTOP)  # holds the partial file, still open
    try:
        r = subprocess.run([WH_BIN, "get", h.code, "big", dst, "--peer",
                            h.addr, "--cache-dir", os.path.join(workdir, "c2")],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1, r
        assert "another get is writing" in r.stderr, r.stderr
        assert os.path.exists(partial) and not os.path.exists(dst)
    finally:
        p.send_signal(signal.SIGCONT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert open(dst, "rb").read() == open(os.path.join(h.share, "big"), "rb").read()


def test_lost_host_keeps_the_partial_copy(workdir, hosts):
    """A get whose host goes away fails, keeps its partial file under the
    temporary name, and the next get (from a host started again) resumes
    in it."""
    share = os.path.join(workdir, "s")
    os.mkdir(share)
    with open(os.path.join(share, "big"), "wb") as f:
        f.write(os.urandom(128 * MiB))
    h = hosts(share)
    cache = os.path.join(workdir, "cc")
    dst = os.path.join(workdir, "big")
    p = subprocess.Popen([WH_BIN, "get", h.code, "big", dst, "--peer", h.addr,
                          "--cache-dir", cache, "--parallel", "1",
                          "--timeout-ms", "2000"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: len(store_entries(cache)[1]) >= 3 or p.poll() is not None,
                    60, 0.002)
    h.kill()
    _, err = p.communicate(timeout=120)
    if p.returncode == 0:
        pytest.skip("the get finished before the host was stopped")
    assert p.returncode == 1 and "partial copy is kept" in err, err
    assert not os.path.exists(dst)
    assert os.path.exists(os.path.join(workdir, ".big.wh-partial"))
    s = get(hosts(share), "big", dst, cache)
    assert open(dst, "rb").read() == open(os.path.join(share, "big"), "rb").read()
    assert s["chunks_resumed"] >= 3 and s["chunks_fetched"] < s["chunks"], s
    assert not os.path.exists(os.path.join(workdir, ".big.wh-partial"))


def test_corrupt_chunk_in_store_is_refetched(share, hosts, workdir):
    h = hosts(share)
    cache = os.path.join(workdir, "cc")
    src = os.path.join(share, "renders", "shot042", "take1.mov")
    want = open(src, "rb").read()
    a = os.path.join(workdir, "a")
    first = get(h, "renders/shot042/take1.mov", a, cache)
    # an earlier get's file supplies the chunks of another
    s = get(h, "renders/shot042/take1.mov", os.path.join(workdir, "b0"), cache)
    assert s["chunks_fetched"] == 0 and s["chunks_from_store"] == first["chunks"]
    # the store refers to the bytes of a and b0: change one byte of each
    for victim in (a, os.path.join(workdir, "b0")):
        with open(victim, "r+b") as f:
            f.seek(100)
            b = f.read(1)
            f.seek(100)
            f.write(bytes([b[0] ^ 0xff]))
    s = get(h, "renders/shot042/take1.mov", os.path.join(workdir, "b"), cache)
    # both copies of the first chunk are tried, and discarded
    assert s["corrupt_chunks_discarded"] == 2
    assert s["chunks_fetched"] == 1
    assert open(os.path.join(workdir, "b"), "rb").read() == want
    # files that are gone or replaced are not referred to: their chunks
    # come from what is left, or the wire
    for f in (a, os.path.join(workdir, "b0"), os.path.join(workdir, "b")):
        os.unlink(f)
    with open(a, "wb") as f:
        f.write(want)   # the same bytes, but another file
    s = get(h, "renders/shot042/take1.mov", os.path.join(workdir, "c"), cache)
    assert s["corrupt_chunks_discarded"] == 0
    assert s["chunks_fetched"] == s["chunks"]
    assert open(os.path.join(workdir, "c"), "rb").read() == want


def test_full_disk(share, hosts, workdir):
    h = hosts(share)
    tiny = os.path.join(workdir, "tiny")
    os.mkdir(tiny)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", tiny], check=True)
    try:
        r = get(h, "renders/shot042/take1.mov", os.path.join(tiny, "take1.mov"),
                os.path.join(workdir, "cc"), check=False)
        assert r.returncode == 1
        assert "no space left" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert os.listdir(tiny) == []   # nothing half-written, under any name
    finally:
        subprocess.run(["umount", tiny])
    # the store is intact: the next get uses it and verifies every chunk
    s = get(h, "renders/shot042/take1.mov", os.path.join(workdir, "ok"),
            os.path.join(workdir, "cc"))
    assert s["corrupt_chunks_discarded"] == 0


def test_errors(share, hosts, workdir):
    h = hosts(share)
    r = get(h, "no/such/file", os.path.join(workdir, "x"), os.path.join(workdir, "cc"),
            check=False)
    assert r.returncode == 1 and "no/such/file" in r.stderr
    r = get(h, "../etc/passwd", os.path.join(workdir, "x"), os.path.join(workdir, "cc"),
            check=False)
    assert r.returncode == 2
    r = subprocess.run([WH_BIN, "get", "AAAA-BBBB-CCCC-DDDD", "renders", workdir,
                        "--peer", h.addr], capture_output=True, text=True, timeout=60)
    if h.code != "AAAA-BBBB-CCCC-DDDD":
        assert r.returncode == 1 and "wrong join code" in r.stderr


def test_device_fifo_or_socket_destination_refused(share, hosts, workdir):
    """A get renames its copy over the destination: a device node (as
    /dev/null would be), a FIFO or a socket named as the destination is
    refused and left as it was; inside a copied tree a FIFO where a file
    goes is replaced, without the get blocking on it."""
    h = hosts(share)
    cache = os.path.join(workdir, "cc")
    src = "renders/notes.txt"
    null = os.path.join(workdir, "null")
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    fifo = os.path.join(workdir, "fifo")
    os.mkfifo(fifo)
    for node, kind in ((null, stat.S_ISCHR), (fifo, stat.S_ISFIFO)):
        r = get(h, src, node, cache, check=False, timeout=30)
        assert r.returncode == 2, r.stderr
        assert "device, FIFO or socket" in r.stderr and node in r.stderr
        assert kind(os.lstat(node).st_mode)
    assert not [n for n in os.listdir(workdir) if n.endswith(".wh-partial")]
    out = os.path.join(workdir, "out")
    os.makedirs(os.path.join(out, "renders", "shot042"))
    os.mkfifo(os.path.join(out, "renders", "notes.txt"))
    os.mkfifo(os.path.join(out, "renders", "shot042", "take1.mov"))
    get(h, "renders", out, cache, timeout=60)
    assert same_tree(os.path.join(share, "renders"), os.path.join(out, "renders"))


def test_symlink_where_a_directory_goes(share, hosts, workdir):
    """A symlink in the destination where the host has a directory (an
    earlier get's, from a host that had a symlink there) is replaced by the
    directory: none of the tree's files goes where it points.  A regular
    file there is an error, and left as it was."""
    h = hosts(share)
    cache = os.path.join(workdir, "cc")
    out = os.path.join(workdir, "out")
    elsewhere = os.path.join(workdir, "elsewhere")
    os.makedirs(os.path.join(out, "renders"))
    os.mkdir(elsewhere)
    os.symlink(elsewhere, os.path.join(out, "renders", "shot042"))
    get(h, "renders", out, cache)
    assert os.listdir(elsewhere) == []
    assert not os.path.islink(os.path.join(out, "renders", "shot042"))
    assert same_tree(os.path.join(share, "renders"), os.path.join(out, "renders"))
    out2 = os.path.join(workdir, "out2")
    os.makedirs(os.path.join(out2, "renders"))
    mine = os.path.join(out2, "renders", "shot042")
    with open(mine, "w") as f:
        f.write("mine\n")
    r = get(h, "renders", out2, cache, check=False)
    assert r.returncode != 0 and "in the way" in r.stderr, r.stderr
    with open(mine) as f:
        assert f.read() == "mine\n"


def manifest_files(hc):
    """The manifest files in the host's cache directory |hc| (not the
    small-file hashes, small.whs, nor the names' versions, names.whn)."""
    return [f for f in os.listdir(hc) if not f.endswith(".tmp") and
            f not in ("small.whs", "names.whn")]


def test_host_hashes_a_file_once(share, workdir):
    """The host's manifest cache survives a restart."""
    from conftest import Host
    hc = os.path.join(workdir, "hc")
    for _ in range(2):
        h = Host(share, extra=["--cache-dir", hc])
        try:
            get(h, "renders", os.path.join(workdir, "out%d" % _),
                os.path.join(workdir, "cc%d" % _))
        finally:
            h.close()
    # one manifest per file version, written once; files smaller than a
    # chunk's minimum (notes.txt, empty) have no manifest file: their
    # whole-file hashes go to small.whs, once they are a second old (so
    # whether it is there depends on how fast the run was); names.whn
    # holds the version last seen under each name
    assert "names.whn" in os.listdir(hc)
    assert len(manifest_files(hc)) == 1


def test_sparse_file_keeps_holes(workdir, hosts):
    share = os.path.join(workdir, "s")
    os.mkdir(share)
    p = os.path.join(share, "disk.img")
    with open(p, "wb") as f:
        f.truncate(256 * MiB)
        f.seek(100 * MiB)
        f.write(os.urandom(MiB))
    h = hosts(share)
    dst = os.path.join(workdir, "disk.img")
    s = get(h, "disk.img", dst, os.path.join(workdir, "cc"))
    assert subprocess.run(["cmp", p, dst]).returncode == 0
    # the runs of zeros stay holes, and repeat chunks cross the wire once
    assert os.stat(dst).st_blocks * 512 < 8 * MiB
    assert s["chunks_fetched"] < s["chunks"]


@pytest.mark.parametrize("backend", ["posix", "uring"])
def test_both_io_backends(backend, share, workdir):
    """Host and client forced onto each disk I/O backend (WH_IO)."""
    from conftest import Host
    env = dict(os.environ, WH_IO=backend)
    old = os.environ.get("WH_IO")
    os.environ["WH_IO"] = backend   # the host inherits it
    try:
        h = Host(share)
    finally:
        if old is None:
            del os.environ["WH_IO"]
        else:
            os.environ["WH_IO"] = old
    try:
        out = os.path.join(workdir, "out-" + backend)
        os.mkdir(out)
        r = subprocess.run([WH_BIN, "get", h.code, "renders", out, "--peer", h.addr,
                            "--cache-dir", os.path.join(workdir, "cc-" + backend),
                            "--json"], capture_output=True, text=True, env=env,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        assert same_tree(os.path.join(share, "renders"), os.path.join(out, "renders"))
    finally:
        h.close()


def test_whole_share_into_a_directory(share, hosts, workdir):
    h = hosts(share)
    dst = os.path.join(workdir, "mirror")
    cache = os.path.join(workdir, "cc")
    get(h, ".", dst, cache)
    assert same_tree(share, dst)
    again = get(h, ".", dst, cache)   # the same place, not mirror/share
    assert same_tree(share, dst)
    assert again["chunks_fetched"] == 0


def test_get_while_the_host_is_hashing(workdir, hosts):
    """A cold file: the copy starts on the first chunks the host has hashed
    and keeps asking for the rest of the manifest while it fetches."""
    share = os.path.join(workdir, "s")
    os.mkdir(share)
    src = os.path.join(share, "big")
    with open(src, "wb") as f:
        f.write(os.urandom(160 * MiB))
    hc = os.path.join(workdir, "hc")
    h = hosts(share, extra=["--cache-dir", hc])
    dst = os.path.join(workdir, "big")
    s = get(h, "big", dst, os.path.join(workdir, "cc"))
    assert open(dst, "rb").read() == open(src, "rb").read()
    assert s["chunks"] > 100 and s["chunks_fetched"] == s["chunks"]
    assert s["wire_bytes"] == 160 * MiB
    # the streamed manifest went to the host's cache, once
    assert len(manifest_files(hc)) == 1
    # and the next client gets it whole from there
    s2 = get(h, "big", os.path.join(workdir, "big2"), os.path.join(workdir, "cc2"))
    assert s2["chunks"] == s["chunks"]
    assert open(os.path.join(workdir, "big2"), "rb").read() == open(src, "rb").read()


def test_file_changes_during_streamed_manifest(workdir, hosts):
    """A file rewritten while the host hashes it and the client copies it:
    the copy is one whole version of the file, or a clean error; never a
    mix of two."""
    share = os.path.join(workdir, "s")
    os.mkdir(share)
    src = os.path.join(share, "big")
    old = os.urandom(128 * MiB)
    with open(src, "wb") as f:
        f.write(old)
    h = hosts(share, extra=["--cache-dir", os.path.join(workdir, "hc")])
    dst = os.path.join(workdir, "big")
    p = subprocess.Popen([WH_BIN, "get", h.code, "big", dst, "--peer", h.addr,
                          "--cache-dir", os.path.join(workdir, "cc"), "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # rewrite a stretch near the end, in place, once the copy is under way
    assert wait_for(lambda: any(f.endswith(".wh-partial") for f in os.listdir(workdir))
                    or p.poll() is not None, 60, 0.001)
    patch = os.urandom(8 * MiB)
    with open(src, "r+b") as f:
        f.seek(100 * MiB)
        f.write(patch)
    new = old[:100 * MiB] + patch + old[108 * MiB:]
    out, err = p.communicate(timeout=120)
    leftovers = [f for f in os.listdir(workdir) if f.endswith(".wh-partial")]
    assert leftovers == []
    if p.returncode == 0:
        got = open(dst, "rb").read()
        assert got == new or got == old
        s = json.loads(out)
        assert s["files"] == 1
    else:
        assert p.returncode == 1
        assert "changed" in err, err
        assert not os.path.exists(dst)
    # either way the next copy is exactly the file as it is now
    s = get(h, "big", os.path.join(workdir, "again"), os.path.join(workdir, "cc"))
    assert open(os.path.join(workdir, "again"), "rb").read() == new


def test_two_clients_get_the_same_cold_file(workdir, hosts):
    """Two copies at once while the host is still hashing: both complete,
    and the host hashes the file once."""
    share = os.path.join(workdir, "s")
    os.mkdir(share)
    src = os.path.join(share, "big")
    with open(src, "wb") as f:
        f.write(os.urandom(96 * MiB))
    hc = os.path.join(workdir, "hc")
    h = hosts(share, extra=["--cache-dir", hc])
    procs = []
    for i in range(2):
        procs.append(subprocess.Popen(
            [WH_BIN, "get", h.code, "big", os.path.join(workdir, "out%d" % i),
             "--peer", h.addr, "--cache-dir", os.path.join(workdir, "cc%d" % i),
             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    data = open(src, "rb").read()
    for i, p in enumerate(procs):
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        s = json.loads(out)
        assert s["chunks_fetched"] == s["chunks"]
        assert open(os.path.join(workdir, "out%d" % i), "rb").read() == data
    assert len(manifest_files(hc)) == 1


def test_tree_of_many_small_files(workdir, hosts):
    share = os.path.join(workdir, "s")
    for d in range(10):
        os.makedirs(os.path.join(share, "d%02d" % d, "sub"))
        for i in range(100):
            sub = "sub" if i % 2 else ""
            with open(os.path.join(share, "d%02d" % d, sub, "f%03d" % i), "wb") as f:
                f.write(os.urandom(10 * 1024 - i))
    with open(os.path.join(share, "d00", "big"), "wb") as f:
        f.write(os.urandom(20 * MiB))
    h = hosts(share)
    out = os.path.join(workdir, "out")
    s = get(h, "", out, os.path.join(workdir, "cc"))
    assert s["files"] == 1001
    assert same_tree(share, out)
    # again: nothing crosses the wire
    s = get(h, "", out, os.path.join(workdir, "cc"))
    assert s["chunks_fetched"] == 0 and same_tree(share, out)


def test_hard_links_kept(workdir, hosts):
    """Files that are hard links of one another on the host are one file
    and its links at the destination, small and chunked ones alike; a file
    with the same bytes but its own inode stays its own file."""
    s = os.path.join(workdir, "share")
    os.makedirs(os.path.join(s, "tree", "sub"))
    big = os.path.join(s, "tree", "big")
    with open(big, "wb") as f:
        f.write(os.urandom(3 * MiB))
    os.link(big, os.path.join(s, "tree", "big-again"))
    os.link(big, os.path.join(s, "tree", "sub", "big-too"))
    small = os.path.join(s, "tree", "small")
    with open(small, "w") as f:
        f.write("small and linked\n")
    os.link(small, os.path.join(s, "tree", "sub", "small-link"))
    with open(os.path.join(s, "tree", "small-copy"), "w") as f:
        f.write("small and linked\n")
    # linked to a file outside the copied tree: a file of its own there
    os.link(small, os.path.join(s, "outside"))
    h = hosts(s)
    out = os.path.join(workdir, "out")
    os.mkdir(out)
    cache = os.path.join(workdir, "cc")
    for attempt in range(2):  # the second get finds them linked already
        st = get(h, "tree", out, cache)
        dst = os.path.join(out, "tree")
        assert same_tree(os.path.join(s, "tree"), dst)
        ino = {n: os.stat(os.path.join(dst, n)).st_ino for n in
               ("big", "big-again", "sub/big-too", "small", "sub/small-link",
                "small-copy")}
        assert ino["big"] == ino["big-again"] == ino["sub/big-too"], ino
        assert os.stat(os.path.join(dst, "big")).st_nlink == 3
        assert ino["small"] == ino["sub/small-link"], ino
        assert os.stat(os.path.join(dst, "small")).st_nlink == 2
        assert ino["small-copy"] not in (ino["small"], ino["big"])
        assert st["files"] == 6 and st["hardlinks"] == 3, st
        if attempt == 0:
            # the linked bytes crossed the wire once
            assert st["wire_bytes"] < 3 * MiB + 4096, st
    assert not [n for n in os.listdir(dst) if n.endswith(".wh-link")]


def test_hard_link_across_file_systems_copied(workdir, hosts):
    """Where the destination cannot hold the link (its two names on two
    file systems), the second name gets a copy, with the mode and mtime."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    s = os.path.join(workdir, "share")
    os.makedirs(os.path.join(s, "tree", "sub"))
    a = os.path.join(s, "tree", "a")
    with open(a, "wb") as f:
        f.write(os.urandom(2 * MiB + 7))
    os.chmod(a, 0o640)
    os.link(a, os.path.join(s, "tree", "sub", "b"))
    out = os.path.join(workdir, "out")
    sub = os.path.join(out, "tree", "sub")
    os.makedirs(sub)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", sub],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs: " + r.stderr)
    try:
        h = hosts(s)
        st = get(h, "tree", out, os.path.join(workdir, "cc"))
        assert same_tree(os.path.join(s, "tree"), os.path.join(out, "tree"))
        x = os.stat(os.path.join(out, "tree", "a"))
        y = os.stat(os.path.join(sub, "b"))
        assert x.st_dev != y.st_dev
        assert stat_same(x, y)
        assert st["files"] == 2 and st["hardlinks"] == 1, st
        assert sorted(os.listdir(sub)) == ["b"]
    finally:
        subprocess.run(["umount", "-l", sub], capture_output=True)


def stat_same(x, y):
    return (x.st_mode == y.st_mode and x.st_size == y.st_size and
            x.st_mtime_ns == y.st_mtime_ns)
