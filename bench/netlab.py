"""Network namespaces for the benchmarks: a host side ("h") and a client
side ("c"), joined directly by a veth pair (LAN), through a router
namespace ("r") running bench/linkem (emulated links), or not at all
(loopback: both sides in one namespace).  Names are unique per run and
everything is removed by down(), which is safe to call twice."""
import json
import os
import re
import statistics
import subprocess
import time

HOST_IP, CLIENT_IP = "10.77.0.1", "10.77.0.2"


def _ip(*args, check=True):
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


class Net:
    """kind: "loopback", "lan" or "emu"; for "emu": rate_mbit, rtt_ms, loss_pct,
    queue_bytes (default: one bandwidth-delay product, at least 32 frames)."""

    def __init__(self, kind, linkem=None, rate_mbit=0, rtt_ms=0, loss_pct=0,
                 queue_bytes=None, tag=None):
        self.kind = kind
        self.linkem_bin = linkem
        self.rate, self.rtt, self.loss = rate_mbit, rtt_ms, loss_pct
        self.queue = queue_bytes or max(int(rate_mbit * 1e6 / 8 * rtt_ms / 1e3), 32 * 1514)
        t = tag or "%d" % os.getpid()
        self.ns = {"h": "whb%s-h" % t, "c": "whb%s-c" % t, "r": "whb%s-r" % t}
        self.ifs = {"h": "whb%sh" % t, "c": "whb%sc" % t,
                    "ra": "whb%sa" % t, "rb": "whb%sb" % t}
        self.created = []
        self.linkem = None
        self.linkem_stats = None
        self.base_rtt = None
        if kind == "loopback":
            self.host_ip = self.client_ip = "127.0.0.1"
        else:
            self.host_ip, self.client_ip = HOST_IP, CLIENT_IP

    def prefix(self, side):
        ns = self.ns["h"] if self.kind == "loopback" else self.ns[side]
        return ["nsenter", "--net=/run/netns/" + ns]

    def _ns(self, name):
        _ip("netns", "add", name)
        self.created.append(name)
        _ip("-n", name, "link", "set", "lo", "up")
        for k in ("all", "default"):
            subprocess.run(["ip", "netns", "exec", name, "sysctl", "-q", "-w",
                            "net.ipv6.conf.%s.disable_ipv6=1" % k],
                           capture_output=True)

    def _veth(self, a, ns_a, b, ns_b):
        _ip("link", "add", a, "type", "veth", "peer", "name", b)
        _ip("link", "set", a, "netns", ns_a)
        _ip("link", "set", b, "netns", ns_b)
        for i, n in ((a, ns_a), (b, ns_b)):
            _ip("-n", n, "link", "set", i, "mtu", "1500", "up")

    def _no_offload(self, ns, ifname):
        # frames must cross the emulator one MTU at a time with real
        # checksums: no segmentation or checksum offload, no GRO
        subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-K", ifname, "tx", "off",
                        "tso", "off", "gso", "off", "gro", "off"], capture_output=True,
                       check=True)

    def up(self):
        try:
            self._up()
        except BaseException:
            self.down()
            raise
        return self

    def _up(self):
        self._ns(self.ns["h"])
        if self.kind == "loopback":
            return
        self._ns(self.ns["c"])
        if self.kind == "lan":
            self._veth(self.ifs["h"], self.ns["h"], self.ifs["c"], self.ns["c"])
        else:
            self._ns(self.ns["r"])
            self._veth(self.ifs["h"], self.ns["h"], self.ifs["ra"], self.ns["r"])
            self._veth(self.ifs["c"], self.ns["c"], self.ifs["rb"], self.ns["r"])
            for ns, i in ((self.ns["h"], self.ifs["h"]), (self.ns["c"], self.ifs["c"]),
                          (self.ns["r"], self.ifs["ra"]), (self.ns["r"], self.ifs["rb"])):
                self._no_offload(ns, i)
        _ip("-n", self.ns["h"], "addr", "add", HOST_IP + "/24", "dev", self.ifs["h"])
        _ip("-n", self.ns["c"], "addr", "add", CLIENT_IP + "/24", "dev", self.ifs["c"])
        if self.kind == "emu":
            # calibrate: the path's own round trip (veths, the stacks, the
            # emulator's wake-ups) at zero delay and no loss, taken off the
            # configured delay so that ping sees the configured RTT
            self._linkem(0, 0)
            self._wait_path()
            out = subprocess.run(self.prefix("c") + ["ping", "-c", "50", "-i", "0.005",
                                                     HOST_IP], capture_output=True,
                                 text=True).stdout
            t = [float(x) for x in re.findall(r"time=([\d.]+) ms", out)]
            self.base_rtt = statistics.median(t) if t else 0.0
            self.stop_linkem()
            self.linkem_stats = None
            self._linkem(max(self.rtt - self.base_rtt, 0) / 2, self.loss)
        self._wait_path()

    def _linkem(self, delay_ms, loss):
        cmd = ["nsenter", "--net=/run/netns/" + self.ns["r"], self.linkem_bin,
               self.ifs["ra"], self.ifs["rb"], "--delay-ms", "%.4f" % delay_ms,
               "--rate-mbit", "%g" % self.rate, "--loss", "%g" % loss,
               "--queue-bytes", "%d" % self.queue, "--rt"]
        self.linkem = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        if self.linkem.stdout.readline().strip() != "ready":
            raise RuntimeError("linkem did not start: %s" % " ".join(cmd))
        self.linkem_cmd = cmd

    def _wait_path(self):
        # wait for the path (ARP through the emulator included)
        for _ in range(50):
            r = subprocess.run(self.prefix("c") + ["ping", "-c", "1", "-W", "1", HOST_IP],
                               capture_output=True)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("no path from %s to %s" % (self.ns["c"], HOST_IP))

    def wire_bytes(self):
        """Bytes that crossed the client's interface, both directions
        (loopback: bytes sent on lo, each packet counted once)."""
        if self.kind == "loopback":
            ns, dev, keys = self.ns["h"], "lo", ("tx",)
        else:
            ns, dev, keys = self.ns["c"], self.ifs["c"], ("rx", "tx")
        r = _ip("-n", ns, "-j", "-s", "link", "show", "dev", dev)
        st = json.loads(r.stdout)[0]["stats64"]
        return sum(st[k]["bytes"] for k in keys)

    def linkem_snapshot(self):
        """linkem's counters now (SIGUSR1 makes it print them)."""
        self.linkem.send_signal(10)
        return json.loads(self.linkem.stdout.readline())

    def stop_linkem(self):
        if self.linkem and self.linkem.poll() is None:
            self.linkem.terminate()
            try:
                out = self.linkem.communicate(timeout=5)[0]
                self.linkem_stats = json.loads(out.strip().splitlines()[-1])
            except (subprocess.TimeoutExpired, ValueError, IndexError):
                self.linkem.kill()
        self.linkem = None

    def down(self):
        self.stop_linkem()
        for n in reversed(self.created):
            # processes still inside keep nothing alive: deleting the name
            # and killing what runs there removes the veths too
            r = subprocess.run(["ip", "netns", "pids", n], capture_output=True, text=True)
            for p in r.stdout.split():
                try:
                    os.kill(int(p), 9)
                except (OSError, ValueError):
                    pass
            _ip("netns", "del", n, check=False)
        self.created = []
