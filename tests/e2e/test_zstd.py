"""Per-chunk zstd (capability ZSTD): compressed on the wire when it pays,
the same bytes on disk, raw for incompressible data and compressed
formats, and nothing compressed when either side turns it off.

The host's automatic rule compresses only when the link is slow against
the CPU, which loopback never is, so these tests force a level on the host
with WORMHOLE_ZSTD=3 (the rule itself is unit-tested in test_zstd.c and
measured in bench/)."""
import os
import random
import re
import shutil
import subprocess

import pytest

from conftest import MiB, Mount, get, mount_stats, same_tree

WORDS = ("wormhole chunk stream host client manifest verified the of and "
         "a to in is that for it with as was on be by this").split()


def text(n, seed=1):
    rnd = random.Random(seed)
    out, size = [], 0
    while size < n:
        line = " ".join(rnd.choice(WORDS) for _ in range(12)) + "\n"
        out.append(line)
        size += len(line)
    return "".join(out).encode()[:n]


def same(a, b):
    with open(a, "rb") as f, open(b, "rb") as g:
        return f.read() == g.read()


@pytest.fixture
def share(workdir):
    s = os.path.join(workdir, "share")
    os.makedirs(s)
    with open(os.path.join(s, "log.txt"), "wb") as f:
        f.write(text(6 * MiB))
    with open(os.path.join(s, "small.txt"), "wb") as f:
        f.write(text(100 * 1024, seed=2))
    with open(os.path.join(s, "random.bin"), "wb") as f:
        f.write(os.urandom(3 * MiB))
    # compressible bytes under names of compressed formats: sent raw
    for name in ("backup.zst", "clip.mp4"):
        with open(os.path.join(s, name), "wb") as f:
            f.write(text(2 * MiB, seed=3))
    return s


@pytest.fixture
def forced(monkeypatch):
    monkeypatch.setenv("WORMHOLE_ZSTD", "3")


def test_text_crosses_compressed(share, forced, hosts, workdir):
    h = hosts(share)
    dst = os.path.join(workdir, "log.txt")
    s = get(h, "log.txt", dst, os.path.join(workdir, "c1"))
    assert same(os.path.join(share, "log.txt"), dst)
    assert s["bytes"] == 6 * MiB and s["chunks_fetched"] == s["chunks"] > 1
    assert s["wire_bytes"] < s["bytes"] // 3, s
    assert s["corrupt_chunks_discarded"] == 0
    # a copy elsewhere from the store (which refers to the first copy's
    # bytes): nothing on the wire
    dst2 = os.path.join(workdir, "log2.txt")
    s = get(h, "log.txt", dst2, os.path.join(workdir, "c1"))
    assert s["wire_bytes"] == 0 and same(os.path.join(share, "log.txt"), dst2)
    assert s["chunks_from_store"] == s["chunks"]
    h.stop()
    assert "zstd saved" in h.stderr()


def test_incompressible_and_compressed_names_go_raw(share, forced, hosts,
                                                    workdir):
    h = hosts(share)
    for name in ("random.bin", "backup.zst", "clip.mp4"):
        dst = os.path.join(workdir, name)
        s = get(h, name, dst, os.path.join(workdir, "c-" + name))
        assert same(os.path.join(share, name), dst)
        assert s["wire_bytes"] == s["bytes"] == os.path.getsize(dst), (name, s)


@pytest.mark.parametrize("side", ["client", "host"])
def test_disabled(share, hosts, workdir, monkeypatch, side):
    """Either side off: the capability is not agreed and every reply is
    raw (a client of a host without compression, an older host, works as
    before)."""
    env = {}
    if side == "host":
        monkeypatch.setenv("WORMHOLE_ZSTD", "off")
        h = hosts(share)
        env = {"WORMHOLE_ZSTD": "auto"}
    else:
        monkeypatch.setenv("WORMHOLE_ZSTD", "3")
        h = hosts(share)
        env = {"WORMHOLE_ZSTD": "off"}
    dst = os.path.join(workdir, "log.txt")
    s = get(h, "log.txt", dst, os.path.join(workdir, "c"), env=env)
    assert same(os.path.join(share, "log.txt"), dst)
    assert s["wire_bytes"] == s["bytes"] == 6 * MiB
    h.stop()
    assert "zstd saved" not in h.stderr()


def test_mount_reads_compressed(share, forced, hosts, mkmnt, workdir):
    h = hosts(share)
    mnt = mkmnt()
    m = Mount(h, mnt)
    try:
        # small file: READ replies, compressed
        assert same(os.path.join(share, "small.txt"),
                    os.path.join(mnt, "small.txt"))
        # a large one read in sequence: chunks prefetched, compressed
        dst = os.path.join(workdir, "copy.txt")
        subprocess.run(["cp", os.path.join(mnt, "log.txt"), dst], check=True)
        assert same(os.path.join(share, "log.txt"), dst)
        st = mount_stats(mnt)
        if st["chunks_fetched"]:
            assert st["bytes_wire"] < st["bytes_fetched"] // 2, st
        assert st["chunks_bad"] == 0
        # a random piece through READ
        with open(os.path.join(mnt, "log.txt"), "rb") as f:
            f.seek(3 * MiB + 12345)
            got = f.read(50000)
        with open(os.path.join(share, "log.txt"), "rb") as f:
            f.seek(3 * MiB + 12345)
            assert got == f.read(50000)
    finally:
        m.close()
    h.stop()
    assert "zstd saved" in h.stderr()


@pytest.fixture
def text_tree(workdir):
    """A tree of small text files (GET_SMALL sends them whole): 120 files
    of 1-20 KiB in three directories, and a few under compressed names."""
    s = os.path.join(workdir, "tshare")
    rnd = random.Random(9)
    for d in range(3):
        dd = os.path.join(s, "tree", "d%d" % d)
        os.makedirs(dd)
        for i in range(40):
            with open(os.path.join(dd, "f%02d.txt" % i), "wb") as f:
                f.write(text(rnd.randrange(1024, 20 * 1024), seed=100 * d + i))
    return s


def tree_bytes(top):
    n = 0
    for d, _, files in os.walk(top):
        n += sum(os.path.getsize(os.path.join(d, f)) for f in files)
    return n


@pytest.mark.parametrize("off", [None, "client", "host"])
def test_small_files_compressed(text_tree, hosts, workdir, monkeypatch, off):
    """GET_SMALL replies of text cross compressed (fewer wire bytes, the
    same files); WORMHOLE_ZSTD=off on either side keeps them raw."""
    monkeypatch.setenv("WORMHOLE_ZSTD", "off" if off == "host" else "3")
    h = hosts(text_tree)
    env = {"WORMHOLE_ZSTD": "off"} if off == "client" else {}
    dst = os.path.join(workdir, "got")
    s = get(h, "tree", dst, os.path.join(workdir, "c"), env=env)
    src = os.path.join(text_tree, "tree")
    assert same_tree(src, dst)
    total = tree_bytes(src)
    assert s["bytes"] == total and s["files"] == 120, s
    if off:
        assert s["wire_bytes"] == total, s
    else:
        # word salad compresses about 3:1
        assert 0 < s["wire_bytes"] < total // 2, s
    h.stop()
    assert ("zstd saved" in h.stderr()) == (off is None)


def cp_tree_from_mount(h, text_tree, mkmnt, workdir):
    """`cp -r` the text tree out of a mount of |h|, check it arrived whole,
    and return the mount's stats after it."""
    mnt = mkmnt()
    m = Mount(h, mnt)
    try:
        subprocess.run(["cp", "-r", os.path.join(mnt, "tree"),
                        os.path.join(workdir, "cp")], check=True)
        assert same_tree(os.path.join(text_tree, "tree"),
                         os.path.join(workdir, "cp"))
        return mount_stats(mnt)
    finally:
        m.close()


def test_mount_counts_read_wire_bytes(text_tree, hosts, mkmnt, workdir,
                                      monkeypatch):
    """user.wormhole.stats bytes_wire counts every reply's data as it
    crossed: READs of the reader's own and the small files fetched ahead
    too, not only chunks; raw, that is exactly the bytes received."""
    monkeypatch.setenv("WORMHOLE_ZSTD", "off")
    h = hosts(text_tree)
    st = cp_tree_from_mount(h, text_tree, mkmnt, workdir)
    assert st["reads_direct"] + st["small_fetched"] > 0, st
    assert st["bytes_wire"] == (st["bytes_direct"] + st["bytes_fetched"] +
                                st["small_bytes"]) > 0, st


def test_mount_counts_compressed_wire_bytes(text_tree, forced, hosts, mkmnt,
                                            workdir):
    """Compressed replies count their zstd frames: fewer wire bytes than
    file bytes, for READs and small files fetched ahead alike."""
    h = hosts(text_tree)
    st = cp_tree_from_mount(h, text_tree, mkmnt, workdir)
    got = st["bytes_direct"] + st["bytes_fetched"] + st["small_bytes"]
    assert got > 0 and 0 < st["bytes_wire"] < got // 2, st
    assert st["small_bad"] == 0 and st["chunks_bad"] == 0, st
    h.stop()
    assert "zstd saved" in h.stderr()


def test_small_files_from_host_without_zsmall(text_tree, hosts, workdir,
                                              monkeypatch, share):
    """A host that compresses chunks but predates compressed GET_SMALL
    replies (no ZSMALL): small files come raw, big ones still compressed,
    and all arrive intact."""
    monkeypatch.setenv("WORMHOLE_ZSTD", "3")
    monkeypatch.setenv("WH_HOST_NO_ZSMALL", "1")
    h = hosts(text_tree)
    shutil.copy(os.path.join(share, "log.txt"),
                os.path.join(text_tree, "tree", "log.txt"))
    dst = os.path.join(workdir, "got")
    s = get(h, "tree", dst, os.path.join(workdir, "c"))
    src = os.path.join(text_tree, "tree")
    assert same_tree(src, dst)
    small = tree_bytes(src) - 6 * MiB
    # the 6 MiB log crosses compressed (< 1/3), the small files raw
    assert small < s["wire_bytes"] < small + 2 * MiB, s


# the bytes of a GET_SMALL reply's payload that are not file data: its
# count (u16), and for each file sent a status, version, hash and length
SMALL_REPLY_COUNT_LEN = 2
SMALL_DATA_ENT_HDR_LEN = 1 + 32 + 32 + 4


def zstd_saved(host_log):
    """(bytes saved, replies compressed) from the host's log."""
    m = re.findall(r"zstd saved (\d+) bytes in (\d+) replies", host_log)
    assert m, host_log[-2000:]
    return tuple(sum(int(x[i]) for x in m) for i in (0, 1))


@pytest.mark.parametrize("compressed", [True, False])
def test_small_reply_wire_bytes_are_file_data(workdir, hosts, monkeypatch,
                                              compressed):
    """wire_bytes counts file data as it crossed, not the protocol around
    it, whether a GET_SMALL reply came raw or compressed: raw, the files'
    sizes (their entry headers not counted); compressed, the zstd frame's
    share of the files' data, by size (the frame carries the headers too,
    compressed with the data, and their share is not counted either)."""
    monkeypatch.setenv("WORMHOLE_ZSTD", "3" if compressed else "off")
    share = os.path.join(workdir, "few")
    os.makedirs(share)
    rnd = random.Random(5)
    sizes = [rnd.randrange(1024, 2048) for _ in range(40)]
    # one GET_SMALL: into a directory the get makes, 64 files at most and
    # no more once it has 8 and 80 KiB (these are 40 and under 80 KiB)
    assert sum(sizes) < 80 * 1024
    for i, n in enumerate(sizes):
        with open(os.path.join(share, "f%02d.txt" % i), "wb") as f:
            f.write(text(n, seed=i))
    h = hosts(share)
    s = get(h, "", os.path.join(workdir, "got"), os.path.join(workdir, "c"))
    data = sum(sizes)
    assert s["bytes"] == data and s["chunks_fetched"] == len(sizes), s
    h.stop()
    if not compressed:
        assert s["wire_bytes"] == data, s
        assert "zstd saved" not in h.stderr()
        return
    saved, replies = zstd_saved(h.stderr())
    assert replies == 1
    raw = SMALL_REPLY_COUNT_LEN + len(sizes) * SMALL_DATA_ENT_HDR_LEN + data
    frame = raw - saved
    assert abs(s["wire_bytes"] - data * frame // raw) <= 1, (s, frame, raw)
    assert s["wire_bytes"] < frame < data // 2, (s, frame, raw)


def test_mount_small_reply_wire_bytes_are_file_data(workdir, hosts, mkmnt,
                                                    forced):
    """The mount's bytes_wire counts compressed GET_SMALL replies as `get
    --json` does: the frames' share of the files' data, not their entry
    headers (a raw reply counts the files' sizes)."""
    share = os.path.join(workdir, "few")
    os.makedirs(os.path.join(share, "d"))
    rnd = random.Random(6)
    for i in range(40):
        with open(os.path.join(share, "d", "f%02d.txt" % i), "wb") as f:
            f.write(text(rnd.randrange(2048, 6144), seed=50 + i))
    h = hosts(share)
    mnt = mkmnt()
    m = Mount(h, mnt)
    try:
        subprocess.run(["cp", "-r", os.path.join(mnt, "d"),
                        os.path.join(workdir, "cp")], check=True)
        assert same_tree(os.path.join(share, "d"), os.path.join(workdir, "cp"))
        st = mount_stats(mnt)
    finally:
        m.close()
    h.stop()
    saved, _ = zstd_saved(h.stderr())
    assert st["small_batches"] > 0 and st["small_bad"] == 0, st
    assert st["chunks_fetched"] == 0, st
    # what crossed: READ replies' data and GET_SMALL replies' payloads
    # (headers and data; the mount sends no hashes, so every entry is a
    # file's data), less what compression saved
    headers = (SMALL_REPLY_COUNT_LEN * st["small_batches"] +
               SMALL_DATA_ENT_HDR_LEN * st["small_fetched"])
    frames = st["bytes_direct"] + headers + st["small_bytes"] - saved
    # each reply's headers had a share of its frame, at most their size
    assert frames - headers - st["small_batches"] <= st["bytes_wire"] < \
        frames, (st, saved, frames, headers)
