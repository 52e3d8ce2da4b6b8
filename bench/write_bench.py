#!/usr/bin/env python3
"""Write throughput of cimfs' writer through the Python API, next to `cp`.

    python bench/write_bench.py [GB] [--dir DIR] [--small-mb MB] [--keep]

Phases (all in the same run, same directory, same number of bytes):

  cp-large      `cp` of one source file of GB gigabytes (the source is written
                first; page cache warm for both sides, nothing is dropped).
  large-buffer  files of ~512 MB written with Writer.add_file(data=buffer) from
                one preallocated buffer (first 8 bytes changed per file so that
                nothing is deduplicated), commit included.
  large-equal-len  as large-buffer, but every file of exactly 512 MB (the
                writer then hashes each inline, to deduplicate at once).
  large-readinto  the large-buffer files read from the source file with readinto into a
                1 MiB buffer (Writer.add_file(size=, source=file)), like a real
                import; commit included.
  cp-small / small-buffer  many files of 1-64 KiB, SMALL_MB in total, from slices
                of a random buffer; cp of one file of the same byte count.

Prints MB/s for each, ours/cp ratios and the peak RSS (getrusage). Timings
include commit (hashing of large data and metadata), but no fsync on either side;
every phase starts after os.sync() so that no phase pays for an earlier one's
writeback.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import cimfs

MB = 1 << 20
LARGE_FILE = 512 * MB


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def timed(fn):
    os.sync()  # write back earlier phases' dirty pages (nothing is dropped from the cache)
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def cp(src: str, dst: str) -> float:
    secs = timed(lambda: subprocess.run(["cp", src, dst], check=True))
    os.remove(dst)
    return secs


def rate(nbytes: int, secs: float) -> float:
    return nbytes / MB / secs


def large_sizes(total: int, equal: bool):
    """~512 MB pieces of `total`. Unless `equal`, each length differs a little
    (as real files do): the writer hashes a large object of a new length in the
    background, but one whose length it has seen before inline, to deduplicate
    it at once."""
    sizes = []
    i = 0
    while total > 0:
        n = min(LARGE_FILE - (0 if equal else 4099 * i), total)
        sizes.append(n)
        total -= n
        i += 1
    return sizes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gb", nargs="?", type=float, default=2.0, help="gigabytes of large-file data (default 2)")
    ap.add_argument("--dir", default=None, help="where to write (default: a temporary directory under /tmp)")
    ap.add_argument("--small-mb", type=int, default=256, help="megabytes of small files (default 256)")
    ap.add_argument("--keep", action="store_true", help="keep the images")
    args = ap.parse_args(argv)

    base = tempfile.mkdtemp(prefix="cimfs-bench-", dir=args.dir)
    total = int(args.gb * 1024) * MB
    sizes = large_sizes(total, equal=False)
    equal_sizes = large_sizes(total, equal=True)
    results = {}
    try:
        print(f"cimfs {cimfs.__version__}, python {sys.version.split()[0]}, {os.cpu_count()} CPUs, dir {base}")
        print(f"large: {total / MB:.0f} MB in {len(sizes)} files of <= {LARGE_FILE // MB} MB; "
              f"small: {args.small_mb} MB in files of 1-64 KiB")

        # the data: one preallocated buffer (random, so nothing compresses or dedups)
        buf = bytearray(min(LARGE_FILE, total))
        with open("/dev/urandom", "rb") as r:
            r.readinto(buf)
        src = os.path.join(base, "source.bin")
        with open(src, "wb") as f:
            for i, n in enumerate(sizes):
                buf[:8] = i.to_bytes(8, "little")
                f.write(memoryview(buf)[:n])
        print(f"source file written ({os.path.getsize(src) / MB:.0f} MB); page cache warm, nothing dropped")

        # ---- large files
        cp(src, os.path.join(base, "warmup.bin"))  # read the source once so both sides start warm
        secs = cp(src, os.path.join(base, "copy.bin"))
        results["cp-large"] = (total, secs)

        out = os.path.join(base, "large-buffer")
        os.mkdir(out)

        def write_from_buffer():
            with cimfs.create(out, "big.cim") as w:
                for i, n in enumerate(sizes):
                    buf[:8] = i.to_bytes(8, "little")
                    w.add_file(f"file{i}.bin", data=memoryview(buf)[:n])
        results["large-buffer"] = (total, timed(write_from_buffer))
        rss_large = peak_rss_mb()
        if not args.keep:
            shutil.rmtree(out)

        out = os.path.join(base, "large-equal-len")
        os.mkdir(out)

        def write_equal_lengths():
            with cimfs.create(out, "big.cim") as w:
                for i, n in enumerate(equal_sizes):
                    buf[:8] = i.to_bytes(8, "little")
                    w.add_file(f"file{i}.bin", data=memoryview(buf)[:n])
        results["large-equal-len"] = (sum(equal_sizes), timed(write_equal_lengths))
        if not args.keep:
            shutil.rmtree(out)

        out = os.path.join(base, "large-readinto")
        os.mkdir(out)

        def write_from_file():
            with open(src, "rb", buffering=0) as f, cimfs.create(out, "big.cim") as w:
                for i, n in enumerate(sizes):
                    w.add_file(f"file{i}.bin", size=n, source=f)
        results["large-readinto"] = (total, timed(write_from_file))
        if not args.keep:
            shutil.rmtree(out)
        os.remove(src)

        # ---- small files
        rng = random.Random(1)
        small_total = args.small_mb * MB
        pool = memoryview(buf)  # slices at random offsets: distinct contents
        spans, acc = [], 0
        while acc < small_total:
            n = rng.randint(1024, 64 * 1024)
            spans.append((rng.randrange(0, len(buf) - n), n))
            acc += n
        small_src = os.path.join(base, "small-source.bin")
        with open(small_src, "wb") as f:
            for off, n in spans:
                f.write(pool[off: off + n])
        cp(small_src, os.path.join(base, "warmup.bin"))
        results["cp-small"] = (acc, cp(small_src, os.path.join(base, "copy.bin")))
        os.remove(small_src)

        out = os.path.join(base, "small-buffer")
        os.mkdir(out)

        def write_small():
            with cimfs.create(out, "small.cim") as w:
                for d in range(len(spans) // 1000 + 1):
                    w.add_directory(f"d{d}")
                for k, (off, n) in enumerate(spans):
                    w.add_file(f"d{k // 1000}\\f{k}", data=pool[off: off + n])
        results["small-buffer"] = (acc, timed(write_small))
        if not args.keep:
            shutil.rmtree(out)
        del pool
        nfiles = len(spans)

        # ---- report
        print()
        print(f"{'phase':16} {'MB':>8} {'seconds':>8} {'MB/s':>8}")
        for k, (n, s) in results.items():
            print(f"{k:16} {n / MB:8.0f} {s:8.2f} {rate(n, s):8.0f}")
        cpl = rate(*results["cp-large"])
        cps = rate(*results["cp-small"])
        print()
        print(f"ratio large-buffer / cp-large   = {rate(*results['large-buffer']) / cpl:.2f}")
        print(f"ratio large-readinto / cp-large = {rate(*results['large-readinto']) / cpl:.2f}")
        print(f"ratio large-equal-len / cp-large = {rate(*results['large-equal-len']) / cpl:.2f} "
              "(all files of one length: hashed inline)")
        print(f"ratio small-buffer / cp-small   = {rate(*results['small-buffer']) / cps:.2f} "
              f"({nfiles} files; cp copies one file of the same size)")
        print(f"peak RSS after large phases: {rss_large:.0f} MB (the {len(buf) / MB:.0f} MB source buffer "
              f"included); at end: {peak_rss_mb():.0f} MB")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"kept: {base}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
