"""The join code: the right one mounts, a wrong one is refused without
hurting anyone else, and a host stops accepting a code that is being
guessed."""
import os
import subprocess

from conftest import WH_BIN


def mount_once(code, mnt, addr, timeout=30):
    """The daemonizing form of `wormhole mount`, as a user runs it."""
    return subprocess.run([WH_BIN, "mount", code, mnt, "--peer", addr],
                          capture_output=True, text=True, timeout=timeout)


def test_right_code_in_any_spelling(small_share, hosts, mounts, mkmnt):
    h = hosts(small_share, code="7KJM-XBCD-QRST-VWYZ")
    for spelling in ("7KJM-XBCD-QRST-VWYZ", "7kjmxbcdqrstvwyz",
                     "7kjm xbcd qrst vwyz"):
        mnt = mkmnt()
        mounts(spelling, mnt, addr=h.addr)
        with open(os.path.join(mnt, "hello.txt")) as f:
            assert f.read() == "hello\n"


def test_folded_letters(small_share, hosts, mounts, mkmnt):
    h = hosts(small_share, code="0000-1111-ABCD-EFGH")
    mnt = mkmnt()
    mounts("OOoo-IiLl-abcd-efgh", mnt, addr=h.addr)
    assert os.listdir(mnt)


def test_wrong_code_refused(small_share, hosts, mounts, mkmnt):
    h = hosts(small_share)
    bad = "AAAA-BBBB-CCCC-DDDD" if h.code != "AAAA-BBBB-CCCC-DDDD" else "AAAA-BBBB-CCCC-DDDE"
    mnt = mkmnt()
    r = mount_once(bad, mnt, h.addr)
    assert r.returncode == 1
    assert "wrong join code" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not os.path.ismount(mnt)
    # the host is still serving the right code
    assert h.alive()
    good = mkmnt()
    mounts(h, good)
    with open(os.path.join(good, "hello.txt")) as f:
        assert f.read() == "hello\n"


def test_daemonized_mount_and_unmount(small_share, hosts, mkmnt):
    h = hosts(small_share)
    mnt = mkmnt()
    r = mount_once(h.code, mnt, h.addr)
    assert r.returncode == 0, r.stderr
    try:
        assert os.path.ismount(mnt)
        with open(os.path.join(mnt, "hello.txt")) as f:
            assert f.read() == "hello\n"
        st = subprocess.run([WH_BIN, "status"], capture_output=True, text=True)
        lines = [l for l in st.stdout.splitlines() if l.split("\t")[0] == mnt]
        assert lines == ["%s\t%s, over QUIC" % (mnt, h.addr)], st.stdout
        # the same facts, for scripts
        link = subprocess.run(["getfattr", "--only-values", "-n",
                               "user.wormhole.link", mnt],
                              capture_output=True, text=True)
        assert link.returncode == 0, link.stderr
        assert link.stdout.splitlines() == ["peer " + h.addr,
                                            "transport quic",
                                            "state connected"]
    finally:
        r = subprocess.run([WH_BIN, "unmount", mnt], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not os.path.ismount(mnt)


def test_too_many_failures_lock_the_code(small_share, hosts, mkmnt):
    h = hosts(small_share)
    bad = "AAAA-BBBB-CCCC-DDDD" if h.code != "AAAA-BBBB-CCCC-DDDD" else "AAAA-BBBB-CCCC-DDDE"
    mnt = mkmnt()
    for _ in range(10):
        r = mount_once(bad, mnt, h.addr)
        assert r.returncode == 1
    r = mount_once(h.code, mnt, h.addr)
    assert r.returncode == 1
    assert "too many failed attempts" in r.stderr
    assert not os.path.ismount(mnt)
    assert h.alive()
    assert "too many failed attempts" in h.stderr()


def test_malformed_code_is_a_usage_error(small_share, hosts, mkmnt):
    h = hosts(small_share)
    mnt = mkmnt()
    for bad in ("1234", "AAAA-BBBB-CCCC-DDDU", "AAAA-BBBB-CCCC-DDD!",
                "AAAA-BBBB-CCCC-DDDD-E"):
        r = mount_once(bad, mnt, h.addr)
        assert r.returncode == 2, bad
        assert "malformed join code" in r.stderr
    r = subprocess.run([WH_BIN, "host", small_share, "--code", "nope",
                        "--no-signal"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    assert "malformed join code" in r.stderr
