#!/usr/bin/env python3
"""bench/perfcat.py PERF_DATA CPU_SECONDS

Sorts the samples of one side's `perf record -g` (bench/run-coldboth
PERF=DIR) into the costs of a cold get: each sample goes to the first
rule its call chain matches (the leaf function first, then the system
call or library it came through), and each cost gets its share of
CPU_SECONDS (the side's measured CPU time), so the lines add up to it.
"""
import collections
import subprocess
import sys


def samples(path):
    out = subprocess.run(["perf", "script", "-i", path, "-F", "tid,ip,sym,dso"],
                         capture_output=True, text=True).stdout
    cur = None
    for line in out.splitlines():
        if not line.strip():
            continue
        if not line.startswith("\t"):
            if cur:
                yield cur
            cur = []
        elif cur is not None:
            p = line.split(None, 1)
            cur.append(p[1] if len(p) > 1 else "")
    if cur:
        yield cur


def cost(stack):
    top = stack[0] if stack else ""
    s = " | ".join(stack)
    if "first_hit" in top or "par_work" in top or top.startswith("scan "):
        return "hash: CDC cut"
    if "blake3" in top:
        return "BLAKE3"
    if "generic_fadvise" in s:
        return "hash: readahead (fadvise WILLNEED)"
    if "io_uring_enter" in s or "io_submit_sqes" in s:
        return "host: read of CHUNK replies (io_uring)"
    if "pwrite" in s:
        return "client: pwrite of the destination"
    if "munmap" in s:
        return "munmap"
    if "exc_page_fault" in s:
        return "page faults"
    if "gnutls" in s or "nettle" in s or "hogweed" in s:
        return "QUIC packet protection (GnuTLS/Nettle)"
    if "sendmsg" in s:
        return "sendmsg"
    if "recvmsg" in s:
        return "recvmsg"
    if "memmove" in top or "memcpy" in top:
        return "memcpy in user space"
    if "ngtcp2" in top:
        return "ngtcp2"
    if ("futex" in s or "pthread_cond" in s or "epoll_wait" in s
            or "schedule" in s):
        return "waits and wake-ups (futex, epoll, scheduler)"
    if any(k in s for k in ("flock", "__libc_write", "fstat", "openat",
                            "statx", "close")):
        return "small system calls (open, fstat, flock, write)"
    if "irq" in s:
        return "interrupts"
    return "other"


def main():
    total = float(sys.argv[2])
    c = collections.Counter(cost(st) for st in samples(sys.argv[1]))
    n = sum(c.values())
    if not n:
        sys.exit("no samples in %s" % sys.argv[1])
    print("%d samples, %.2f CPU-s" % (n, total))
    for k, v in c.most_common():
        print("  %-48s %5.1f%%  %.2f s" % (k, 100.0 * v / n, v * total / n))


if __name__ == "__main__":
    main()
