"""The cimfs command line end to end, through subprocess."""

import json
import os
import subprocess
import sys

import pytest

import cimfs
from test_layer_import import snapshot


def cimfs_cli(*args, stdin=None, cwd=None, input_bytes=None):
    return subprocess.run([sys.executable, "-m", "cimfs", *map(str, args)], stdin=stdin, input=input_bytes,
                          capture_output=True, cwd=cwd, timeout=120)


@pytest.fixture
def imported(tmp_path):
    assert cimfs_cli("sample", tmp_path / "layer.tar").returncode == 0
    r = cimfs_cli("import", tmp_path / "layer.tar", tmp_path / "out" / "layer.cim")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"" and r.stderr == b""  # quiet by default
    return tmp_path / "out" / "layer.cim"


def test_readme_first_command(tmp_path, imported):
    r = cimfs_cli("ls", "-lR", imported)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "kernel32.dll" in out and "Files\\Windows\\System32:" in out
    assert "Documents and Settings -> C:\\Users" in out
    assert "hosts.lnk -> hosts" in out


def test_ls_stat_cat_info_verify(imported):
    r = cimfs_cli("ls", imported, "Files/Windows")
    assert r.stdout.decode().split() == ["notepad.exe", "System32", "win.ini"]
    r = cimfs_cli("ls", "--json", imported, "Files\\Windows\\System32\\drivers\\etc")
    names = [e["path"] for e in json.loads(r.stdout)]
    assert names == ["Files\\Windows\\System32\\drivers\\etc\\hosts", "Files\\Windows\\System32\\drivers\\etc\\hosts.lnk"]
    r = cimfs_cli("stat", "--json", imported, "files/windows/notepad.exe")
    st = json.loads(r.stdout)
    assert st["link_count"] == 2 and sorted(st["links"]) == ["Files\\Windows\\System32\\notepad.exe",
                                                             "Files\\Windows\\notepad.exe"]
    assert st["security_descriptor"]
    r = cimfs_cli("stat", imported, "Files/Windows/System32/kernel32.dll")
    assert b"$KERNEL.PURGE.ESBCACHE" in r.stdout
    r = cimfs_cli("cat", imported, "Files/Users/Public/Downloads/setup.exe:Zone.Identifier")
    assert r.returncode == 0 and r.stdout.startswith(b"[ZoneTransfer]\r\nZoneId=3")
    with cimfs.open(imported) as img:
        assert cimfs_cli("cat", imported, "Hives/Sam_Delta").stdout == img.read_bytes("Hives\\Sam_Delta")
    r = cimfs_cli("info", "--json", imported)
    info = json.loads(r.stdout)
    assert info["version"] == "3.0" and info["objects"]["streams"] == 1
    assert info["usage"] == sum(f["size"] for f in info["region_files"]) + os.path.getsize(imported) + sum(
        os.path.getsize(p) for p in cimfs.region_files(imported, True) if "objectid_" in os.path.basename(p))
    r = cimfs_cli("info", imported)
    assert b"region set:" in r.stdout and b"usage:" in r.stdout
    r = cimfs_cli("verify", imported)
    assert r.returncode == 0 and r.stderr == b""


def test_import_stdin_zstd_and_json(tmp_path):
    pytest.importorskip("zstandard")
    assert cimfs_cli("sample", tmp_path / "l.tar.zst").returncode == 0
    with open(tmp_path / "l.tar.zst", "rb") as f:
        r = cimfs_cli("import", "--json", "-", tmp_path / "i.cim", stdin=f)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["compression"] == "zstd" and s["files"] == 12 and s["source"] == "<stdin>"


def test_export_extract_rm(tmp_path, imported):
    r = cimfs_cli("export", imported, tmp_path / "e.tar.gz")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "e.tar.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert cimfs_cli("import", tmp_path / "e.tar.gz", tmp_path / "out" / "again.cim").returncode == 0
    assert snapshot(imported) == snapshot(tmp_path / "out" / "again.cim")
    r = cimfs_cli("extract", imported, tmp_path / "x", "Hives")
    assert r.returncode == 0 and sorted(os.listdir(tmp_path / "x" / "Hives"))[0] == "DefaultUser_Delta"
    before = set(os.listdir(tmp_path / "out"))
    assert cimfs_cli("rm", tmp_path / "out" / "again.cim").returncode == 0
    gone = before - set(os.listdir(tmp_path / "out"))
    assert "again.cim" in gone and any(g.startswith("region_") for g in gone)
    assert cimfs.open(imported).verify() == []


def test_create_command(tmp_path):
    (tmp_path / "t" / "d").mkdir(parents=True)
    (tmp_path / "t" / "d" / "f.txt").write_bytes(b"data")
    r = cimfs_cli("create", tmp_path / "t", tmp_path / "c.cim")
    assert r.returncode == 0, r.stderr
    assert cimfs_cli("cat", tmp_path / "c.cim", "d/f.txt").stdout == b"data"


def test_errors_and_exit_codes(tmp_path, imported):
    r = cimfs_cli("ls", tmp_path / "missing.cim")
    assert r.returncode == 1 and r.stdout == b""
    assert r.stderr.startswith(b"cimfs: ") and b"missing.cim" in r.stderr
    r = cimfs_cli("cat", imported, "Files/nope.txt")
    assert r.returncode == 1 and b"nope.txt" in r.stderr
    r = cimfs_cli("import", tmp_path / "absent.tar", tmp_path / "z.cim")
    assert r.returncode == 1 and b"absent.tar" in r.stderr and not (tmp_path / "z.cim").exists()
    r = cimfs_cli("import", tmp_path / "layer.tar", imported)  # exists, no --force
    assert r.returncode == 1 and b"already exists" in r.stderr
    assert cimfs_cli("frobnicate").returncode == 2
    assert cimfs_cli("ls").returncode == 2
    r = cimfs_cli("--help")
    assert r.returncode == 0 and b"import" in r.stdout and b"Exit status" in r.stdout
    r = cimfs_cli("import", "--help")
    assert r.returncode == 0 and b"--parent" in r.stdout
    assert cimfs_cli("--version").stdout.startswith(b"cimfs ")


def test_bad_tar_on_the_command_line(tmp_path):
    (tmp_path / "bad.tar").write_bytes(b"\0" * 100 + b"garbage" * 200)
    r = cimfs_cli("import", tmp_path / "bad.tar", tmp_path / "o" / "b.cim")
    assert r.returncode == 1 and b"bad.tar" in r.stderr and b"Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_verify_reports_damage(tmp_path, imported):
    regions = [p for p in cimfs.region_files(imported, True) if os.path.basename(p).startswith("region_")]
    meta = max(regions, key=os.path.getsize)  # damage the largest region
    with open(meta, "r+b") as f:
        f.truncate(os.path.getsize(meta) // 2)
    r = cimfs_cli("verify", "--json", imported)
    assert r.returncode == 1
    assert b"Traceback" not in r.stderr


def test_python_dash_m_and_entry_point_agree(tmp_path):
    from cimfs.cli import main

    assert main(["sample", str(tmp_path / "a.tar")]) == 0
    assert main(["import", str(tmp_path / "a.tar"), str(tmp_path / "a.cim")]) == 0
    assert main(["verify", str(tmp_path / "a.cim")]) == 0
    assert main(["ls", str(tmp_path / "nope.cim")]) == 1


def test_progress_line_only_on_a_terminal():
    import io

    from cimfs._progress import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    p = Progress("import", stream=tty, delay=0)
    p.last = -1.0
    p(50 << 20, 100 << 20, 1234)
    p.close()
    out = tty.getvalue()
    assert "50.0 MiB / 100.0 MiB (50%)" in out and "/s" in out and "ETA" in out and "1234 entries" in out
    pipe = io.StringIO()
    q = Progress("import", stream=pipe, delay=0)
    q(1, 2, 3)
    q.close()
    assert pipe.getvalue() == ""
