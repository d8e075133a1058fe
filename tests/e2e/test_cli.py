"""The command line contract: version, help, usage errors, exit codes."""
import subprocess

from conftest import WH_BIN, free_udp_port


def run(*args, timeout=30):
    return subprocess.run([WH_BIN, *args], capture_output=True, text=True,
                          timeout=timeout)


def test_version():
    r = run("version")
    assert r.returncode == 0
    assert r.stdout.startswith("wormhole ")


def test_help_lists_commands():
    r = run("help")
    assert r.returncode == 0
    for cmd in ("host", "mount", "unmount", "status", "doctor", "version"):
        assert cmd in r.stdout


def test_usage_errors():
    for args in ([], ["frobnicate"], ["host"], ["mount", "AAAA-BBBB-CCCC-DDDD"],
                 ["host", "/tmp", "--bogus"], ["mount", "x", "y", "--timeout-ms", "no"]):
        r = run(*args)
        assert r.returncode == 2, args
        assert r.stderr.strip(), args


def test_mount_without_peer_says_why(tmp_path):
    r = run("mount", "AAAA-BBBB-CCCC-DDDD", str(tmp_path))
    assert r.returncode == 2
    assert "--peer" in r.stderr


def test_host_without_signal_warns(tmp_path):
    p = subprocess.Popen([WH_BIN, "host", str(tmp_path), "--listen", "127.0.0.1:0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().startswith("join code: ")
        assert p.stdout.readline().startswith("listening: 127.0.0.1:")
    finally:
        p.terminate()
        out, err = p.communicate(timeout=10)
    assert p.returncode == 0
    assert "no signal server is configured" in err


def test_host_missing_dir():
    r = run("host", "/nonexistent/dir", "--no-signal", "--listen", "127.0.0.1:0")
    assert r.returncode == 1
    assert "/nonexistent/dir" in r.stderr


def test_mount_unreachable_peer(tmp_path):
    # nothing listens there: UDP and TCP are both refused, and the mount
    # says so rather than waiting out the connect timeout
    port = free_udp_port()
    r = run("mount", "AAAA-BBBB-CCCC-DDDD", str(tmp_path), "--peer",
            "127.0.0.1:%d" % port)
    assert r.returncode == 1
    assert "127.0.0.1:%d refused the connection" % port in r.stderr
    assert "QUIC over UDP and TLS over TCP" in r.stderr
    assert "no answer" not in r.stderr


def test_get_refused_over_tcp(tmp_path):
    port = free_udp_port()
    r = run("get", "AAAA-BBBB-CCCC-DDDD", "x", str(tmp_path / "x"), "--peer",
            "127.0.0.1:%d" % port, "--transport", "tcp")
    assert r.returncode == 1
    assert "refused the connection (tried TLS over TCP)" in r.stderr
    assert not (tmp_path / "x").exists()


def test_mount_on_missing_dir():
    r = run("mount", "AAAA-BBBB-CCCC-DDDD", "/nonexistent/mnt", "--peer", "127.0.0.1:9")
    assert r.returncode == 1
    assert "/nonexistent/mnt" in r.stderr


def test_doctor():
    r = run("doctor")
    assert r.returncode == 0, r.stdout
    assert "0 problems found" in r.stdout
