"""The client's receive rate second by second, shared by bench/run and
bench/run-transport: a sampler of an interface's rx bytes in a namespace,
and what the series says against a link's rate (the ramp-up, and whether
the copy holds a given share of the link from a given second on)."""
import ctypes
import os
import threading
import time

CLONE_NEWNET = 0x40000000


class RxSampler:
    """Bytes received on an interface in a namespace, sampled every 0.1 s
    from a thread that joined the namespace (/proc/thread-self/net/dev).
    The counter is the Ethernet frame bytes the interface received (no
    preamble, no FCS): what the link emulator serialises at its rate."""

    def __init__(self, ns, ifname, period=0.1, pids=None):
        self.ns, self.ifname, self.period = ns, ifname, period
        self.samples = []
        # CPU starvation, sampled alongside: the machine's CPU pressure
        # (PSI "some": time some runnable task waited for a CPU) and the
        # run-queue wait of the processes in |pids| (a dict name -> list of
        # pids, read at every sample, so a pid added later is followed)
        self.pids = pids or {}
        self.cpu = []
        self.stop = threading.Event()
        self.th = threading.Thread(target=self._run, daemon=True)
        self.t0 = None

    def _rx(self):
        with open("/proc/thread-self/net/dev") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name.strip() == self.ifname:
                    return int(rest.split()[0])
        return 0

    def _run(self):
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open("/run/netns/" + self.ns, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                return
        finally:
            os.close(fd)
        while True:
            self._sample()
            if self.stop.wait(self.period):
                self._sample()
                return

    def _sample(self):
        t = time.monotonic()
        self.samples.append((t, self._rx()))
        self.cpu.append((t, cpu_pressure_us(),
                         {k: sum(run_wait_ns(p) for p in v) for k, v in self.pids.items()}))

    def __enter__(self):
        self.t0 = time.monotonic()
        self.th.start()
        return self

    def __exit__(self, *a):
        self.stop.set()
        self.th.join()

    def received(self):
        return self.samples[-1][1] - self.samples[0][1] if self.samples else 0

    def windows(self):
        """MB/s (10^6 bytes) received in each whole second since the start;
        the partial second at the end is left out."""
        out, k = [], 1
        s = self.samples
        if not s:
            return out
        prev = s[0]
        for t, b in s:
            if t - self.t0 >= k:
                out.append((b - prev[1]) / (t - prev[0]) / 1e6)
                prev = (t, b)
                k += 1
        return out


    def cpu_windows(self):
        """Per whole second since the start (as windows()): the share of
        the second in which some task on the machine waited for a CPU (%,
        PSI), and for each name in |pids| the milliseconds its processes'
        threads spent runnable but waiting (summed over threads)."""
        psi, waits, k = [], {n: [] for n in self.pids}, 1
        c = self.cpu
        if not c:
            return psi, waits
        prev = c[0]
        for cur in c:
            if cur[0] - self.t0 >= k:
                dt = cur[0] - prev[0]
                # the counter and the clock are read apart: cap at 100%
                psi.append(min(100.0, (cur[1] - prev[1]) / 1e4 / dt) if dt > 0 else 0.0)
                for n in self.pids:
                    waits[n].append((cur[2].get(n, 0) - prev[2].get(n, 0)) / 1e6)
                prev = cur
                k += 1
        return psi, waits


def cpu_pressure_us():
    """The machine's total CPU pressure stall time, "some" (us), 0 if the
    kernel has no PSI."""
    try:
        with open("/proc/pressure/cpu") as f:
            for line in f:
                if line.startswith("some"):
                    return int(line.rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def run_wait_ns(pid):
    """Nanoseconds the threads of pid have spent runnable, waiting for a
    CPU (/proc/PID/task/*/schedstat, second field); 0 once it is gone.
    Threads that ended take their share with them, so compare over
    stretches where the process keeps its threads."""
    total = 0
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return 0
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            pass
    return total


def link_percent(windows, rate_mbit):
    """Each second's receive rate as a percentage of a link of rate_mbit
    (the frame bytes it can carry: rate_mbit / 8 MB/s)."""
    cap = rate_mbit / 8.0
    return [w / cap * 100 for w in windows]


def held_from(pct, share=95.0):
    """The first second N from which every whole second of the copy ran at
    share % of the link or more: second N + 1 (the window from N to N + 1
    s) and all later ones.  The last whole second is left out when there
    are more than two (it may hold the close of the copy rather than the
    steady rate).  None if no second from some point on stays at share:
    the copy never held it, or it ended before a whole second passed."""
    body = pct[:-1] if len(pct) > 2 else pct
    n = len(body)
    while n > 0 and body[n - 1] >= share:
        n -= 1
    return n if n < len(body) else None


def verdict(pct, share=95.0, within=5):
    """(N, yes/no): whether the copy reached share % of the link within
    `within` seconds of its start and held it to the end."""
    n = held_from(pct, share)
    return n, ("yes" if n is not None and n <= within else "no")
