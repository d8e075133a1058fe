"""The test suite's own housekeeping: what scripts/test.sh cleans up after a
run must be what that run made, nothing else of the same checkout."""
import os
import shutil
import subprocess

from conftest import ROOT, wait_for


def _fake(path):
    """A long sleeper whose executable is |path|."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    shutil.copy(shutil.which("sleep"), path)
    return subprocess.Popen([path, "600"])


def test_kill_leftovers_spares_other_build_dirs(workdir):
    root = os.path.join(workdir, "checkout")
    ours = _fake(os.path.join(root, "build", "wormhole"))
    tool = _fake(os.path.join(root, "build", "tests", "wh_tool"))
    bench = _fake(os.path.join(root, "build-bench", "wormhole"))
    other = _fake(os.path.join(root, "build-asan2", "tests", "wh_tool"))
    try:
        r = subprocess.run([os.path.join(ROOT, "scripts", "kill-leftovers.sh"),
                            os.path.join(root, "build"),
                            os.path.join(root, "build-asan")],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert wait_for(lambda: ours.poll() is not None and
                        tool.poll() is not None, 10)
        assert bench.poll() is None, "a benchmark's binary was killed"
        assert other.poll() is None, "another build directory's tool was killed"
    finally:
        for p in (ours, tool, bench, other):
            if p.poll() is None:
                p.kill()
            p.wait()
