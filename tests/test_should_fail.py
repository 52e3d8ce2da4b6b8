"""Regression cases for hostile images: tests/should_fail/*.bin (format and the
story of each case: tests/should_fail/README.md).

Each case runs in a child process, so that a crash in the extension module fails
one test instead of killing pytest. The child opens the image and does all a
reader can; it must exit normally, and the image must have been refused with a
CimError naming it (CorruptImageError for damage), or verify() must report problems.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

HERE = pathlib.Path(__file__).resolve().parent
CASES = sorted((HERE / "should_fail").glob("*.bin"))


def child(case: str, workdir: str, fixture_dir: str) -> None:
    """Runs in the child: print one JSON line describing what happened."""
    import cimfs

    import _fuzz_container as fc

    header = fc.unpack_to(pathlib.Path(case).read_bytes(), pathlib.Path(workdir),
                          fc.upcase_from_fixture(pathlib.Path(fixture_dir)))
    errors = []
    start = time.monotonic()

    def attempt(f):
        try:
            return f()
        except cimfs.CimError as e:
            errors.append({"type": type(e).__name__, "cim": e.cim, "message": str(e),
                           "corrupt": isinstance(e, cimfs.CorruptImageError)})
            return None

    def read(path, size):
        if size is None or size <= 1 << 26:
            attempt(lambda: img.read_bytes(path))
            return

        def ends():  # a huge (sparse) stream: its two ends, not 2^47 bytes of zeros
            with img.open(path) as f:
                f.read(4096)
                f.seek(size - 10)
                f.read()
        attempt(ends)

    problems = None
    img = attempt(lambda: cimfs.open(header))
    if img is not None:
        with img:
            seen = 0
            for top, _dirs, files in attempt(lambda: list(img.walk())) or []:
                for name in files:
                    seen += 1
                    if seen > 2000:
                        break
                    p = f"{top}\\{name}" if top else name
                    attempt(lambda: img.stat(p))
                    attempt(lambda: img.security_descriptor(p))
                    attempt(lambda: img.extended_attributes(p))
                    attempt(lambda: img.reparse_data(p))
                    attempt(lambda: img.links(p))
                    read(p, attempt(lambda: img.stat(p).size))
                    for s, size in (attempt(lambda: img.streams(p)) or {}).items():
                        read(f"{p}:{s}", size)
            problems = attempt(img.verify)
    print(json.dumps({"header": str(header), "errors": errors, "problems": problems,
                      "seconds": time.monotonic() - start}))


def test_there_are_cases():
    assert len(CASES) >= 4


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_should_fail(case, tmp_path, fixture_dir):
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import test_should_fail as t; "
            "t.child(*sys.argv[2:])")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    r = subprocess.run([sys.executable, "-c", code, str(HERE), str(case), str(tmp_path), str(fixture_dir)],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, f"child died ({r.returncode}):\n{r.stderr[-4000:]}"
    out = json.loads(r.stdout.strip().splitlines()[-1])
    for e in out["errors"]:
        assert e["cim"] == out["header"], e
        assert out["header"] in e["message"], e
    # refused (a CorruptImageError, or another CimError such as a missing region
    # file), or opened with verify() reporting the damage
    assert out["errors"] or out["problems"], out
    # work and output in proportion to the input: no amplification through
    # aliased or sparse structures (see file-table-gaps / file-tables-alias)
    n_problems = len(out["problems"] or [])
    assert n_problems <= 1000 + case.stat().st_size // 16, f"{n_problems} problems from {case.stat().st_size} bytes"
    assert out["seconds"] < 20, out["seconds"]
    if out["problems"] is None and out["errors"]:
        assert any(e["corrupt"] or "missing" in e["message"] for e in out["errors"]), out
