"""A hand-made client that misbehaves gets errors (or loses its own
connection) while the host keeps serving a well-behaved client."""
import os
import subprocess

import pytest

from conftest import TOOLS

CASES = ["dotdot", "absolute", "longname", "truncated", "oversized",
         "garbage", "replytype"]


def probe(h, case):
    r = subprocess.run([os.path.join(TOOLS, "wh_probe"), "--peer", h.addr,
                        "--code", h.code, "--case", case],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_probe_baseline(small_share, hosts):
    h = hosts(small_share)
    assert probe(h, "ok") == "reply GETATTR_REPLY"


@pytest.mark.parametrize("case", CASES)
def test_misbehaving_client(case, tree, hosts, mounts, mkmnt):
    share, _ = tree
    h = hosts(share)
    mnt = mkmnt()
    mounts(h, mnt)
    out = probe(h, case)
    assert out == "closed" or out.startswith("reply ERROR "), out
    if case in ("dotdot", "absolute", "longname"):
        # a bad path is an error reply, not a reason to drop the client
        assert out == "reply ERROR 22"
    assert h.alive()
    # the well-behaved client did not notice
    with open(os.path.join(mnt, "one"), "rb") as f:
        assert f.read() == b"x"
    assert probe(h, "ok") == "reply GETATTR_REPLY"


def test_wrong_code_probe(small_share, hosts):
    h = hosts(small_share)
    r = subprocess.run([os.path.join(TOOLS, "wh_probe"), "--peer", h.addr,
                        "--code", "AAAA-BBBB-CCCC-DDDD", "--case", "ok"],
                       capture_output=True, text=True, timeout=30)
    if h.code != "AAAA-BBBB-CCCC-DDDD":
        assert r.stdout.strip() == "auth-failed"
    assert h.alive()
