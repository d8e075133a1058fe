"""Many small files through the mount: `cp -r` of a tree gives the same
bytes, the small files of a listed directory are fetched ahead of the
reader (the mount's counters show it: few READs of the reader's own), and a
small file changed on the host after it was fetched ahead shows changed
through the mount once the host's change notice arrived (never stale for
good)."""
import errno
import filecmp
import os
import random
import subprocess
import time

import pytest

from conftest import Mount, mount_stats, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (FUSE)")

DIRS = 3
PER_DIR = 40


def make_tree(base, dirs, per_dir, max_size, seed):
    """share/tree/d0.. of |per_dir| random files each; the share's path"""
    rng = random.Random(seed)
    src = os.path.join(base, "share")
    for d in range(dirs):
        dd = os.path.join(src, "tree", "d%d" % d)
        os.makedirs(dd)
        for i in range(per_dir):
            with open(os.path.join(dd, "f%02d" % i), "wb") as f:
                f.write(rng.randbytes(rng.randrange(1, max_size)))
    return src, rng


def make_share(base):
    src, rng = make_tree(base, DIRS, PER_DIR, 20000, 5)
    # the odd ones: empty, bigger than what is fetched whole, a symlink
    t = os.path.join(src, "tree")
    open(os.path.join(t, "d0", "empty"), "wb").close()
    with open(os.path.join(t, "d1", "big"), "wb") as f:
        f.write(rng.randbytes(300 * 1024 + 7))
    os.symlink("f01", os.path.join(t, "d2", "link"))
    return src


def same_tree(a, b):
    c = filecmp.dircmp(a, b)
    if c.left_only or c.right_only or c.diff_files or c.funny_files:
        return False
    for name in c.common_files:
        if not filecmp.cmp(os.path.join(a, name), os.path.join(b, name),
                           shallow=False):
            return False
    return all(same_tree(os.path.join(a, d), os.path.join(b, d))
               for d in c.common_dirs)


@pytest.mark.parametrize("get_small", [True, False],
                         ids=["get_small", "old_host_reads"])
def test_cp_r_of_small_files(tmp_path, hosts, mkmnt, get_small):
    """With a host that offers GET_SMALL the files fetched ahead come
    several to a request (small_batches counts them); a host without it
    gets one READ per file, and the copy is the same."""
    src = make_share(str(tmp_path))
    h = hosts(src) if get_small else \
        hosts(src, wrap=("env", "WH_HOST_NO_SMALL=1"))
    mnt = mkmnt()
    m = Mount(h, mnt)
    try:
        out = str(tmp_path / "copy")
        subprocess.run(["cp", "-r", os.path.join(mnt, "tree"), out],
                       check=True)
        assert same_tree(os.path.join(src, "tree"), out)
        assert os.readlink(os.path.join(out, "d2", "link")) == "f01"
        st = mount_stats(mnt)
        files = DIRS * PER_DIR
        # the neighbours of the first file opened in each directory were
        # fetched ahead and served without a READ of the reader's own
        assert st["small_fetched"] >= files // 2
        assert st["small_stored"] + st["reads_small"] >= files // 2
        assert st["reads_direct"] < files // 2
        assert st["small_bad"] == 0
        if get_small:
            # several files to a request, not one request per file
            assert 0 < st["small_batches"] <= st["small_fetched"] // 2
        else:
            assert st["small_batches"] == 0
        # the file bigger than what is fetched whole was not
        assert st["small_bytes"] < sum(
            os.path.getsize(os.path.join(dp, f))
            for dp, _, fs in os.walk(os.path.join(src, "tree")) for f in fs
            if not os.path.islink(os.path.join(dp, f)))
    finally:
        m.close()


def read_or_none(path):
    """the file's bytes, or None when it changed while open (EIO: a read
    that saw the change after the open, which is what the mount promises
    instead of a mix)"""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        if e.errno != errno.EIO:
            raise
        return None


def test_small_file_changed_on_host_shows(tmp_path, hosts, mkmnt):
    src = make_share(str(tmp_path))
    h = hosts(src)
    mnt = mkmnt()
    m = Mount(h, mnt)
    try:
        out = str(tmp_path / "copy")
        subprocess.run(["cp", "-r", os.path.join(mnt, "tree", "d0"), out],
                       check=True)
        assert mount_stats(mnt)["small_fetched"] > 0
        # a file fetched ahead (now in the kernel's page cache or in
        # RAM), changed in place with the same size
        name = os.path.join("tree", "d0", "f30")
        with open(os.path.join(src, name), "rb") as f:
            old = f.read()
        new = bytes(b ^ 0xFF for b in old)
        time.sleep(0.01)  # a different mtime even on coarse clocks
        with open(os.path.join(src, name), "r+b") as f:
            f.write(new)

        def shows_new():
            got = read_or_none(os.path.join(mnt, name))
            assert got in (None, old, new)
            return got == new
        # the host's change notice (coalesced for 30 ms) drops the cached
        # attributes and pages; 5 s is a bound for a loaded machine
        assert wait_for(shows_new, 5.0), "changed file still shows old bytes"
        # and a neighbour never read before: fetched ahead at the old
        # version, read at the new one, so never the old bytes
        name2 = os.path.join("tree", "d0", "f35")
        with open(os.path.join(src, name2), "rb") as f:
            old2 = f.read()
        with open(os.path.join(src, name2), "ab") as f:
            f.write(b"appended")

        def shows_appended():
            got = read_or_none(os.path.join(mnt, name2))
            assert got in (None, old2, old2 + b"appended")
            return got == old2 + b"appended"
        assert wait_for(shows_appended, 5.0)
    finally:
        m.close()


WALK_DIRS = 8
WALK_FILES = 30


def make_walk_share(base):
    """WALK_DIRS directories of WALK_FILES small files each"""
    return make_tree(base, WALK_DIRS, WALK_FILES, 12000, 7)[0]


def test_cp_r_lists_the_next_directory_ahead(tmp_path, hosts, mkmnt):
    """A walk of the tree (files read in two subdirectories or more) has
    the next subdirectory listed and its files fetched before cp gets
    there: its opendir and its first file cost no round trip of cp's own;
    listing the tree alone, or reading in one subdirectory, fetches
    nothing ahead."""
    src = make_walk_share(str(tmp_path))
    h = hosts(src)
    mnt = mkmnt()
    m = Mount(h, mnt)
    try:
        tree = os.path.join(mnt, "tree")
        subprocess.run(["ls", "-lR", tree], check=True,
                       stdout=subprocess.DEVNULL)
        with open(os.path.join(tree, "d3", "f05"), "rb") as f:
            f.read()
        st = mount_stats(mnt)
        assert st["dirs_ahead"] == 0
        m.close()
        m = Mount(h, mnt)
        out = str(tmp_path / "copy")
        subprocess.run(["cp", "-r", tree, out], check=True)
        assert same_tree(os.path.join(src, "tree"), out)
        st = mount_stats(mnt)
        # the first two subdirectories show the walk; most of the other
        # six are listed ahead and cp used those listings
        assert 1 <= st["dirs_ahead_used"] <= st["dirs_ahead"] <= WALK_DIRS - 2
        # a directory listed ahead had its first file fetched with the
        # rest: one READ of cp's own at most in each of the others
        assert st["reads_direct"] <= WALK_DIRS - st["dirs_ahead_used"]
        assert st["small_bad"] == 0
    finally:
        m.close()


WIDE_DIRS = 20


def make_wide_share(base):
    """WIDE_DIRS directories of WALK_FILES small files, the directories
    and the files made in a shuffled order, so that inode order (cp -r's)
    is neither name order (rsync's) nor, on most file systems, the
    listing's (tar's)"""
    rng = random.Random(11)
    src = os.path.join(base, "share")
    dirs = list(range(WIDE_DIRS))
    rng.shuffle(dirs)
    for d in dirs:
        dd = os.path.join(src, "tree", "d%02d" % d)
        os.makedirs(dd)
        files = list(range(WALK_FILES))
        rng.shuffle(files)
        for i in files:
            with open(os.path.join(dd, "f%02d" % i), "wb") as f:
                f.write(rng.randbytes(rng.randrange(1, 12000)))
    return src


@pytest.mark.parametrize("walker", ["tar", "rsync"])
def test_walks_in_other_orders_find_their_files_fetched(walker, tmp_path,
                                                        hosts, mkmnt):
    """tar (which reads a directory in the order it is listed) and rsync
    (in name order, and it lists every directory long before it reads
    their files) find the files fetched ahead as cp -r does: the mount
    learns the reader's order from its first two files. Before, they sent
    a READ for most files."""
    src = make_wide_share(str(tmp_path))
    h = hosts(src)
    mnt = mkmnt()
    m = Mount(h, mnt)
    try:
        out = str(tmp_path / "copy")
        os.mkdir(out)
        if walker == "tar":
            subprocess.run("tar -C '%s' -cf - tree | tar -C '%s' -xf -" %
                           (mnt, out), shell=True, check=True)
        else:
            subprocess.run(["rsync", "-a", os.path.join(mnt, "tree"), out],
                           check=True)
        assert same_tree(os.path.join(src, "tree"), os.path.join(out, "tree"))
        st = mount_stats(mnt)
        # about one READ of the reader's own per directory at most (its
        # first file, where the directory was not listed ahead)
        assert st["reads_direct"] <= 2 * WIDE_DIRS, st
        assert st["small_bad"] == 0
    finally:
        m.close()


def test_directory_listed_ahead_then_changed_shows_the_change(
        tmp_path, hosts, mkmnt):
    """A listing read ahead is a snapshot: a name added on the host after
    it was read, or a file changed, shows once the host's change notice
    arrived, never the stale listing or the bytes fetched ahead."""
    src = make_walk_share(str(tmp_path))
    h = hosts(src)
    mnt = mkmnt()
    m = Mount(h, mnt)
    try:
        tree = os.path.join(mnt, "tree")
        # the walk's order: the host's inode numbers (cp -r's)
        names = sorted(os.listdir(tree), key=lambda d: os.stat(
            os.path.join(src, "tree", d)).st_ino)
        # reading in two subdirectories starts the walk: the next one is
        # listed ahead, with its first files
        for d in names[:2]:
            os.listdir(os.path.join(tree, d))
            with open(os.path.join(tree, d, "f00"), "rb") as f:
                f.read()
        assert wait_for(lambda: mount_stats(mnt)["dirs_ahead"] == 1, 5.0)
        ahead = names[2]
        time.sleep(0.01)
        for d in names[2:]:
            with open(os.path.join(src, "tree", d, "new"), "wb") as f:
                f.write(b"added on the host")
            with open(os.path.join(src, "tree", d, "f02"), "ab") as f:
                f.write(b"appended")
        # the directory's new mtime shows once the host's change notice
        # arrived (a stat does not open it); the very first listing after
        # that must have the new name
        dd = os.path.join(tree, ahead)
        want_mtime = os.stat(os.path.join(src, "tree", ahead)).st_mtime_ns
        assert wait_for(lambda: os.stat(dd).st_mtime_ns == want_mtime, 5.0)
        for d in names[2:]:
            dd = os.path.join(tree, d)
            assert "new" in os.listdir(dd), \
                "%s: a listing read before the change was used" % d
            with open(os.path.join(src, "tree", d, "f02"), "rb") as f:
                want = f.read()
            assert read_or_none(os.path.join(dd, "f02")) == want, \
                "%s/f02 shows the bytes fetched before the change" % d
            with open(os.path.join(dd, "new"), "rb") as f:
                assert f.read() == b"added on the host"
    finally:
        m.close()
