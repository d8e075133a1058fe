"""The test suite's own housekeeping: what scripts/test.sh cleans up after a
run must be what that run made, nothing else of the same checkout."""
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

import conftest
from conftest import (LOG_TAIL_LINES, ROOT, Host, Mount, netns_name,
                      remove_stale_netns, retry_if_caches_dropped, wait_for)


def _fake(path, env=None):
    """A long sleeper whose executable is |path|, with |env| added to its
    environment."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not os.path.exists(path):
        shutil.copy(shutil.which("sleep"), path)
    return subprocess.Popen([path, "600"],
                            env=dict(os.environ, **env) if env else None)


def test_kill_leftovers_spares_other_build_dirs(workdir):
    root = os.path.join(workdir, "checkout")
    ours = _fake(os.path.join(root, "build", "wormhole"))
    tool = _fake(os.path.join(root, "build", "tests", "wh_tool"))
    bench = _fake(os.path.join(root, "build-bench", "wormhole"))
    other = _fake(os.path.join(root, "build-asan2", "tests", "wh_tool"))
    fuzzer = _fake(os.path.join(root, "build-fuzz", "fuzz", "fuzz_proto"))
    # a fuzz target of a build directory not given
    fuzz_other = _fake(os.path.join(root, "build-fuzz2", "fuzz", "fuzz_proto"))
    # in a given directory but neither the program nor a test or fuzz target
    stray = _fake(os.path.join(root, "build", "fuzz", "corpus_tool"))
    try:
        r = subprocess.run([os.path.join(ROOT, "scripts", "kill-leftovers.sh"),
                            os.path.join(root, "build"),
                            os.path.join(root, "build-asan"),
                            os.path.join(root, "build-fuzz")],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert wait_for(lambda: ours.poll() is not None and
                        tool.poll() is not None and
                        fuzzer.poll() is not None, 10)
        assert bench.poll() is None, "a benchmark's binary was killed"
        assert other.poll() is None, "another build directory's tool was killed"
        assert fuzz_other.poll() is None, \
            "another build directory's fuzz target was killed"
        assert stray.poll() is None, "a program of no known kind was killed"
    finally:
        for p in (ours, tool, bench, other, fuzzer, fuzz_other, stray):
            if p.poll() is None:
                p.kill()
            p.wait()


def test_kill_leftovers_only_this_runs_processes(workdir):
    """With --env (what scripts/test.sh passes: the TMPDIR it gave its
    run), a process of the same build directory started by hand (a fuzzer
    beside the tests) is spared."""
    root = os.path.join(workdir, "checkout")
    mine = {"TMPDIR": os.path.join(workdir, "run1", "tmp")}
    ours = _fake(os.path.join(root, "build-fuzz", "fuzz", "fuzz_proto"), mine)
    by_hand = _fake(os.path.join(root, "build-fuzz", "fuzz", "fuzz_proto"))
    other_run = _fake(os.path.join(root, "build", "wormhole"),
                      {"TMPDIR": mine["TMPDIR"] + "x"})
    try:
        r = subprocess.run([os.path.join(ROOT, "scripts", "kill-leftovers.sh"),
                            "--env", "TMPDIR=" + mine["TMPDIR"],
                            os.path.join(root, "build"),
                            os.path.join(root, "build-fuzz")],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert wait_for(lambda: ours.poll() is not None, 10)
        assert by_hand.poll() is None, "a fuzzer started by hand was killed"
        assert other_run.poll() is None, "another run's program was killed"
    finally:
        for p in (ours, by_hand, other_run):
            if p.poll() is None:
                p.kill()
            p.wait()


def test_host_that_fails_to_start_leaves_no_log(workdir, monkeypatch):
    """A host that cannot start (its share does not exist) raises with its
    log's text and removes the log file it made."""
    tmp = os.path.join(workdir, "tmp")
    os.makedirs(tmp)
    monkeypatch.setattr(tempfile, "tempdir", tmp)  # where the logs go
    with pytest.raises(RuntimeError, match="host did not start"):
        Host(os.path.join(workdir, "no-such-share"))
    assert os.listdir(tmp) == []
    # the same directory keeps a live host's log until it is closed
    share = os.path.join(workdir, "share")
    os.makedirs(share)
    h = Host(share)
    try:
        assert len(os.listdir(tmp)) == 1
    finally:
        h.close()
    assert os.listdir(tmp) == []


def test_mount_that_fails_to_start_leaves_nothing(workdir, monkeypatch):
    """A mount that fails (no mount point; no program to run) raises and
    removes the log and the chunk store it made, as a failed Host does."""
    tmp = os.path.join(workdir, "tmp")
    os.makedirs(tmp)
    monkeypatch.setattr(tempfile, "tempdir", tmp)  # logs and stores go here
    share = os.path.join(workdir, "share")
    os.makedirs(share)
    h = Host(share)
    try:
        with pytest.raises(RuntimeError, match="mount failed"):
            Mount(h, os.path.join(workdir, "no-such-mount-point"))
        assert os.listdir(tmp) == [os.path.basename(h.log.name)]
        monkeypatch.setattr(conftest, "WH_BIN",
                            os.path.join(workdir, "no-such-program"))
        with pytest.raises(FileNotFoundError):
            Mount(h, os.path.join(workdir, "no-such-mount-point"))
        assert os.listdir(tmp) == [os.path.basename(h.log.name)]
    finally:
        h.close()
    assert os.listdir(tmp) == []


def test_cache_check_retried_only_after_drops(monkeypatch):
    """A failed page cache check is tried again only when the counters
    moved (ten attempts at most) or cannot be read (three attempts, each
    of which must fail for the test to fail); it passes only when an
    attempt passes."""
    monkeypatch.setattr(conftest, "wait_caches_quiet", lambda: None)

    def run(counts, results):
        it = iter(counts)
        monkeypatch.setattr(conftest, "page_cache_losses", lambda: next(it))
        calls = []

        def attempt():
            calls.append(1)
            return results[len(calls) - 1], len(calls)
        try:
            return retry_if_caches_dropped(attempt, "check", settle=0), \
                len(calls)
        except pytest.fail.Exception as e:
            return str(e), len(calls)

    # nothing dropped pages: the first failure is final
    out, n = run([5, 5], [False, True, True])
    assert n == 1 and out.startswith("check: 1 ")
    # dropped during the first: the second attempt passes
    assert run([5, 6, 6], [False, True]) == (2, 2)
    # dropped during each: ten attempts, then the failure
    out, n = run(range(100), [False] * 20)
    assert n == 10 and "check: 1 " in out and "; 10 " in out
    # dropped during the first, not the second: fails at the second
    out, n = run([1, 2, 3, 3], [False] * 4)
    assert n == 2
    # counters unreadable: three attempts
    out, n = run([None] * 6, [False] * 4)
    assert n == 3 and "unknown" in out
    out, n = run([None, 1] + list(range(2, 20)), [False] * 20)
    assert n == 3
    # unreadable, then the third passes
    assert run([None] * 6, [False, False, True]) == (3, 3)


def test_stale_namespaces_removed_live_ones_kept():
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("network namespaces need root and ip")
    p = subprocess.Popen(["true"])
    p.wait()
    dead = p.pid  # its maker is gone: what a killed run leaves
    stale = "whtest-%d-beef" % dead
    foreign = "wh-smallfix-%d" % dead  # not the suite's naming scheme
    live = netns_name("test")  # this process made it and is running
    made = []
    try:
        for ns in (stale, foreign, live):
            r = subprocess.run(["ip", "netns", "add", ns], capture_output=True,
                               text=True)
            if r.returncode != 0:
                pytest.skip("cannot create a network namespace: " + r.stderr)
            made.append(ns)
        removed = remove_stale_netns()
        left = os.listdir("/run/netns")
        assert stale in removed and stale not in left
        assert live in left and live not in removed
        assert foreign in left
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


FAILING = '''
import signal
from conftest import wait_for

def test_host_dies(hosts, tmp_path):
    h = hosts(str(tmp_path), extra=["-v"])
    assert wait_for(lambda: "info: sharing" in h.stderr(), 10)
    h.proc.send_signal(signal.SIGKILL)
    h.proc.wait()
    assert False, "the test fails"

def test_passes(hosts, tmp_path):
    hosts(str(tmp_path))
'''


def test_failed_test_reports_its_daemons(tmp_path):
    """A failing e2e test's report names each daemon's exit status and ends
    with its log's tail; a passing one prints nothing of the kind."""
    (tmp_path / "test_inner.py").write_text(FAILING)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "conftest",
                        "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                        str(tmp_path / "test_inner.py")],
                       capture_output=True, text=True, timeout=120, env=env,
                       cwd=str(tmp_path))
    out = r.stdout
    assert "1 failed, 1 passed" in out, out[-3000:]
    assert "wormhole processes (call)" in out, out[-3000:]
    assert "killed by SIGKILL" in out, out[-3000:]
    assert "last %d lines of its log" % LOG_TAIL_LINES in out, out[-3000:]
    assert "info: sharing " in out, out[-3000:]  # a line of the host's log
    assert out.count("wormhole processes (") == 1, out[-3000:]
