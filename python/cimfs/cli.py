"""The ``cimfs`` command line (also ``python -m cimfs``).

Conventions (as tar and similar tools): quiet by default, ``-v`` for a log of
what happens, errors on stderr as ``cimfs: <message>``, a progress line on a
terminal for long work, ``--json`` for scripts. Exit status: 0 success, 1 an
operation failed (or ``verify`` found problems), 2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import sys
from typing import List, Optional

from . import __version__
from ._progress import Progress, human
from ._types import FileAttributes
from ._times import datetime_from_filetime
from .errors import CimError

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

_ATTR_LETTERS = [
    (FileAttributes.DIRECTORY, "d"),
    (FileAttributes.REPARSE_POINT, "l"),
    (FileAttributes.ARCHIVE, "a"),
    (FileAttributes.READONLY, "r"),
    (FileAttributes.HIDDEN, "h"),
    (FileAttributes.SYSTEM, "s"),
    (FileAttributes.SPARSE_FILE, "S"),
]


def _attr_string(attrs: int) -> str:
    return "".join(ch if attrs & bit else "-" for bit, ch in _ATTR_LETTERS)


def _time_text(ft: int) -> str:
    if ft <= 0:
        return "-"
    try:
        return datetime_from_filetime(ft).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, ValueError):
        return str(ft)


def _iso(ft: int) -> str:
    try:
        return datetime_from_filetime(ft).isoformat()
    except (OverflowError, ValueError):
        return str(ft)


def _emit_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cimfs",
        description="Build, read and inspect Windows CimFS images (.cim), and convert Windows container layer tars.",
        epilog="Exit status: 0 success, 1 failure (or problems found by verify), 2 usage error. "
               "Run 'cimfs COMMAND --help' for a command's options.",
    )
    p.add_argument("--version", action="version", version=f"cimfs {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log progress to stderr (-vv: debug)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, help_, **kw):
        sp = sub.add_parser(name, help=help_, description=help_, **kw)
        sp.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        return sp

    sp = add("import", "import a Windows container layer tar (plain, .gz or .zst; '-' reads stdin) into a new image")
    sp.add_argument("layer", metavar="LAYER.tar")
    sp.add_argument("image", metavar="IMAGE.cim")
    sp.add_argument("--parent", metavar="P.cim", help="fork this image (same directory): the layer below")
    sp.add_argument("-f", "--force", action="store_true", help="replace IMAGE if it exists")
    sp.add_argument("--json", action="store_true", help="print a summary as JSON")
    sp.add_argument("--no-progress", action="store_true", help="no progress line even on a terminal")

    sp = add("create", "create an image from a host directory tree")
    sp.add_argument("directory", metavar="DIR")
    sp.add_argument("image", metavar="IMAGE.cim")
    sp.add_argument("-f", "--force", action="store_true", help="replace IMAGE if it exists")
    sp.add_argument("--json", action="store_true", help=_JSON_HELP)

    sp = add("ls", "list a directory of an image")
    sp.add_argument("image", metavar="IMAGE")
    sp.add_argument("path", nargs="?", default="", metavar="PATH")
    sp.add_argument("-l", dest="long", action="store_true", help="long format: attributes, size, time, link target")
    sp.add_argument("-R", dest="recursive", action="store_true", help="list subdirectories recursively")
    sp.add_argument("--json", action="store_true", help=_JSON_HELP)

    sp = add("stat", "show the metadata of one path")
    sp.add_argument("image", metavar="IMAGE")
    sp.add_argument("path", metavar="PATH")
    sp.add_argument("--json", action="store_true", help=_JSON_HELP)

    sp = add("cat", "write a file's content (or PATH:stream) to stdout")
    sp.add_argument("image", metavar="IMAGE")
    sp.add_argument("path", metavar="PATH[:stream]")

    sp = add("extract", "extract an image (or some of its paths) into a host directory")
    sp.add_argument("image", metavar="IMAGE")
    sp.add_argument("dest", metavar="DEST")
    sp.add_argument("paths", nargs="*", metavar="PATH")
    sp.add_argument("-f", "--force", action="store_true", help="replace files that already exist in DEST")
    sp.add_argument("--json", action="store_true", help=_JSON_HELP)

    sp = add("export", "write an image as a Windows container layer tar ('-' for stdout)")
    sp.add_argument("image", metavar="IMAGE")
    sp.add_argument("out", metavar="OUT.tar")
    sp.add_argument("--compress", choices=("none", "gzip", "zstd"), default=None,
                    help="compression (default: from OUT's suffix .gz/.zst, else none)")
    sp.add_argument("--json", action="store_true", help=_JSON_HELP)

    sp = add("info", "show an image's version, region sets, region files, object counts and usage")
    sp.add_argument("image", metavar="IMAGE")
    sp.add_argument("--json", action="store_true", help=_JSON_HELP)

    sp = add("verify", "check an image's whole structure (exit 1 on any problem)")
    sp.add_argument("image", metavar="IMAGE")
    sp.add_argument("--json", action="store_true", help=_JSON_HELP)

    sp = add("rm", "remove an image: its header and its own region and objectid files")
    sp.add_argument("image", metavar="IMAGE")
    sp.add_argument("--force", action="store_true", help="remove even when other images fork it")

    sp = add("gc", "remove what interrupted writers left in a directory (temporary files, "
                   "region files no image refers to)")
    sp.add_argument("directory", metavar="DIR")
    sp.add_argument("--json", action="store_true", help="print the removed paths as JSON")

    sp = add("sample", "write a small sample Windows layer tar (for trying the other commands)")
    sp.add_argument("out", metavar="OUT.tar", help="output path ('-' for stdout); .gz/.zst suffix compresses")
    return p


_JSON_HELP = "print the result as JSON (for scripts)"


def _compression_for(path: str, explicit: Optional[str]) -> str:
    if explicit:
        return explicit
    low = path.lower()
    if low.endswith((".gz", ".tgz")):
        return "gzip"
    if low.endswith((".zst", ".zstd")):
        return "zstd"
    return "none"


def main(argv: Optional[List[str]] = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help/--version exit 0, usage errors 2
        return int(e.code or 0)
    level = logging.WARNING
    if getattr(args, "verbose", 0) >= 2:
        level = logging.DEBUG
    elif getattr(args, "verbose", 0) == 1:
        level = logging.INFO
    logging.basicConfig(level=level, format="cimfs: %(message)s", stream=sys.stderr)
    try:
        return _COMMANDS[args.command](args)
    except CimError as e:
        print(f"cimfs: {e}", file=sys.stderr)
        return EXIT_FAIL
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_FAIL
    except OSError as e:
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"cimfs: {args.command}: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        print("cimfs: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


# -- commands ------------------------------------------------------------------------


def _cmd_import(args) -> int:
    from .layer import import_tar

    prog = None if args.no_progress else Progress("import")
    try:
        s = import_tar(args.layer, args.image, parent=args.parent, overwrite=args.force,
                       progress=prog if prog and prog.enabled else None)
    finally:
        if prog:
            prog.close()
    if args.json:
        _emit_json(s.as_dict())
    else:
        logging.getLogger("cimfs").info("%s: %d files, %d directories, %s in %.2f s (%s/s)", args.image, s.files,
                                        s.directories, human(s.bytes), s.seconds, human(s.throughput))
    return EXIT_OK


def _cmd_create(args) -> int:
    from .layer import create_from_directory

    s = create_from_directory(args.directory, args.image, overwrite=args.force)
    if args.json:
        _emit_json(s.as_dict())
    return EXIT_OK


def _open(path: str):
    from .image import open as open_image

    return open_image(path)


def _ls_line(img, path: str, name: str, st) -> str:
    target = ""
    if st.is_reparse_point:
        from ._winfmt import decode_reparse_point

        try:
            rp = decode_reparse_point(img.reparse_data(path))
            target = f" -> {rp.target}" if rp else f" [reparse {st.reparse_tag:#x}]"
        except ValueError:
            target = " [bad reparse data]"
    size = "" if st.is_directory else str(st.size)
    return f"{_attr_string(st.attributes)} {st.link_count:>3} {size:>12} {_time_text(st.last_write_time)} {name}{target}"


def _stat_dict(img, path: str, st) -> dict:
    d = {
        "path": path,
        "file_id": st.file_id,
        "attributes": st.attributes,
        "attribute_names": [f.name for f in FileAttributes if f & st.attributes and f.name],
        "size": st.size,
        "is_directory": st.is_directory,
        "link_count": st.link_count,
        "creation_time": _iso(st.creation_time),
        "last_write_time": _iso(st.last_write_time),
        "change_time": _iso(st.change_time),
        "last_access_time": _iso(st.last_access_time),
        "reparse_tag": st.reparse_tag,
        "ea_length": st.ea_length,
    }
    return d


def _cmd_ls(args) -> int:
    with _open(args.image) as img:
        top = args.path.replace("/", "\\").strip("\\")
        st = img.stat(top)
        if not st.is_directory:
            name = top.rpartition("\\")[2]
            if args.json:
                _emit_json([_stat_dict(img, top, st)])
            else:
                print(_ls_line(img, top, name, st) if args.long else name)
            return EXIT_OK
        out_json = []
        dirs = [top]
        first = True
        while dirs:
            d = dirs.pop(0)
            entries = img.scandir(d)
            if args.recursive and not args.json:
                if not first:
                    print()
                print(f"{d or '.'}:")
            first = False
            sub = []
            for name, cst in entries:
                p = d + "\\" + name if d else name
                if args.json:
                    out_json.append(_stat_dict(img, p, cst))
                elif args.long:
                    print(_ls_line(img, p, name, cst))
                else:
                    print(name)
                if args.recursive and cst.is_directory and not cst.is_reparse_point:
                    sub.append(p)
            dirs[0:0] = sub
        if args.json:
            _emit_json(out_json)
    return EXIT_OK


def _cmd_stat(args) -> int:
    import base64

    from ._winfmt import decode_eas, decode_reparse_point

    with _open(args.image) as img:
        path = args.path.replace("/", "\\").strip("\\")
        st = img.stat(path)
        d = _stat_dict(img, path, st)
        d["links"] = img.links(path)
        sd = img.security_descriptor(path)
        d["security_descriptor"] = base64.b64encode(sd).decode() if sd else ""
        try:
            d["extended_attributes"] = {n: base64.b64encode(v).decode() for n, v, _ in
                                        decode_eas(img.extended_attributes(path))}
        except ValueError as e:
            d["extended_attributes"] = f"<malformed: {e}>"
        if st.is_reparse_point:
            try:
                rp = decode_reparse_point(img.reparse_data(path))
                d["reparse_target"] = rp.target if rp else None
            except ValueError as e:
                d["reparse_target"] = f"<malformed: {e}>"
        d["streams"] = img.streams(path) if not st.is_directory else {}
        if args.json:
            _emit_json(d)
        else:
            width = max(len(k) for k in d)
            for k, v in d.items():
                if isinstance(v, (list, dict)):
                    v = ", ".join(f"{a}={b}" for a, b in v.items()) if isinstance(v, dict) else ", ".join(map(str, v))
                print(f"{k:<{width}}  {v}")
    return EXIT_OK


def _cmd_cat(args) -> int:
    out = sys.stdout.buffer
    with _open(args.image) as img:
        with img.open(args.path) as f:
            buf = bytearray(1 << 20)
            view = memoryview(buf)
            while True:
                n = f.readinto(view)
                if not n:
                    break
                out.write(view[:n])
    out.flush()
    return EXIT_OK


def _cmd_extract(args) -> int:
    from .layer import extract

    s = extract(args.image, args.dest, args.paths, overwrite=args.force)
    if args.json:
        _emit_json(s.as_dict())
    return EXIT_OK


def _cmd_export(args) -> int:
    from .layer import export_tar

    s = export_tar(args.image, args.out, compression=_compression_for(args.out, args.compress))
    if args.json:
        _emit_json(s.as_dict())
    return EXIT_OK


def _cmd_info(args) -> int:
    import cimfs

    with _open(args.image) as img:
        info = img.info()
        counts = {"files": 0, "directories": 0, "reparse_points": 0, "hard_linked": 0, "streams": 0, "bytes": 0}
        for dirpath, dirnames, filenames in img.walk(""):
            for name, st in img.scandir(dirpath):
                if st.is_directory:
                    counts["directories"] += 1
                else:
                    counts["files"] += 1
                    counts["bytes"] += st.size
                if st.is_reparse_point:
                    counts["reparse_points"] += 1
                if st.link_count > 1 and not st.is_directory:
                    counts["hard_linked"] += 1
                if not st.is_directory:
                    p = dirpath + "\\" + name if dirpath else name
                    counts["streams"] += len(img.streams(p))
    files = []
    for f in info.get("region_files", []):
        try:
            files.append({"path": f, "size": os.path.getsize(f)})
        except OSError:
            files.append({"path": f, "size": None})
    d = {
        "image": args.image,
        "version": "%d.%d" % tuple(info["version"]),
        "region_sets": [{"guid": g, "regions": n} for g, n in info.get("region_sets", [])],
        "region_files": files,
        "file_records": info.get("file_count"),
        "objects": counts,
        "usage": cimfs.usage(args.image),
        "usage_with_parents": cimfs.usage(args.image, include_parents=True),
    }
    if args.json:
        _emit_json(d)
    else:
        print(f"image:        {d['image']}")
        print(f"version:      {d['version']}")
        for i, rs in enumerate(d["region_sets"]):
            own = " (own)" if i == len(d["region_sets"]) - 1 else " (parent)"
            print(f"region set:   {rs['guid']} x{rs['regions']}{own}")
        for f in files:
            print(f"region file:  {f['path']} {f['size'] if f['size'] is not None else '?'}")
        c = counts
        print(f"objects:      {c['files']} files, {c['directories']} directories, {c['reparse_points']} reparse "
              f"points, {c['hard_linked']} hard-linked names, {c['streams']} streams, {human(c['bytes'])} of data")
        print(f"usage:        {human(d['usage'])} ({d['usage']} bytes; {d['usage_with_parents']} with parents)")
    return EXIT_OK


def _cmd_verify(args) -> int:
    with _open(args.image) as img:
        problems = img.verify()
    if args.json:
        _emit_json({"image": args.image, "ok": not problems, "problems": problems})
    else:
        for p in problems:
            print(f"cimfs: verify {args.image}: {p}", file=sys.stderr)
    return EXIT_OK if not problems else EXIT_FAIL


def _cmd_rm(args) -> int:
    import cimfs

    cimfs.destroy(args.image, force=args.force)
    return EXIT_OK


def _cmd_gc(args) -> int:
    import json

    import cimfs

    removed = cimfs.collect_garbage(args.directory)
    if args.json:
        print(json.dumps({"removed": removed}))
    else:
        for path in removed:
            print(f"removed {path}")
    return EXIT_OK


def _cmd_sample(args) -> int:
    from ._sample import write_sample_layer

    comp = _compression_for(args.out, None)
    if args.out == "-":
        write_sample_layer(sys.stdout.buffer, comp)
        sys.stdout.buffer.flush()
    else:
        try:
            write_sample_layer(args.out, comp)
        except BaseException:
            try:
                os.unlink(args.out)
            except OSError:
                pass
            raise
    return EXIT_OK


_COMMANDS = {
    "import": _cmd_import,
    "create": _cmd_create,
    "ls": _cmd_ls,
    "stat": _cmd_stat,
    "cat": _cmd_cat,
    "extract": _cmd_extract,
    "export": _cmd_export,
    "info": _cmd_info,
    "verify": _cmd_verify,
    "rm": _cmd_rm,
    "gc": _cmd_gc,
    "sample": _cmd_sample,
}
