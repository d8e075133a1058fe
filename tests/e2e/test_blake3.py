"""BLAKE3 agrees with Debian's b3sum, and chunk boundaries resist shifts."""
import os
import subprocess

import pytest

from conftest import TOOLS

WH_B3 = os.path.join(TOOLS, "wh_b3")


def b3sum(path):
    r = subprocess.run(["b3sum", "--no-names", path], capture_output=True,
                       text=True, check=True)
    return r.stdout.strip()


def ours(path):
    r = subprocess.run([WH_B3, path], capture_output=True, text=True, check=True)
    return r.stdout.split()[0]


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 1023, 1024, 1025, 2048,
                                  4097, 65536 + 7, 1 << 20, (1 << 20) + 1,
                                  3 * 1000 * 1000 + 11])
def test_agrees_with_b3sum(size, tmp_path):
    p = tmp_path / "f"
    p.write_bytes(os.urandom(size))
    assert ours(str(p)) == b3sum(str(p))


def test_over_one_gib_streamed(tmp_path):
    p = tmp_path / "big"
    with open(p, "wb") as f:
        f.truncate((1 << 30) + 12345)   # sparse: zeros, read in blocks
        f.seek(1 << 29)
        f.write(os.urandom(4096))
    assert ours(str(p)) == b3sum(str(p))


def chunks(path):
    r = subprocess.run([WH_B3, "--chunks", path], capture_output=True,
                       text=True, check=True)
    return [line.split() for line in r.stdout.splitlines()]


def test_chunks_cover_the_file_and_match_b3sum(tmp_path):
    data = os.urandom(9 * (1 << 20) + 333)
    p = tmp_path / "f"
    p.write_bytes(data)
    cs = chunks(str(p))
    assert sum(int(c[1]) for c in cs) == len(data)
    for off, length, h in cs[:3]:
        part = tmp_path / "part"
        part.write_bytes(data[int(off):int(off) + int(length)])
        assert b3sum(str(part)) == h


def test_insert_one_byte_changes_few_chunks(tmp_path):
    data = os.urandom(16 * (1 << 20))
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(data)
    b.write_bytes(b"!" + data)
    ha = {c[2] for c in chunks(str(a))}
    hb = [c[2] for c in chunks(str(b))]
    changed = sum(1 for h in hb if h not in ha)
    assert changed <= 2, changed
