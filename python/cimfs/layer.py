"""Windows container layers: tar ⇄ CIM, host directories ⇄ CIM.

:func:`import_tar` is the Python counterpart of hcsshim's ``ImportCimLayerFromTar``
(docs/cim-format.md §7): one pass over a (plain, gzip or zstd) layer tar, file data
streamed from the tar straight into the image's region files. :func:`export_tar`
writes an image back as a layer tar with the same PAX records, so that importing
the export reproduces the image's tree. :func:`create_from_directory` and
:func:`extract` map between a host directory tree and an image.

Decisions where the issue and spec are silent (see also the README):

* Whiteouts ``.wh.NAME`` remove ``NAME`` from the image being built, whether it
  came from the parent image or from earlier in the same tar; a whiteout whose
  target does not exist is ignored with a debug log. ``.wh..wh..opq`` (opaque
  directory, an overlayfs convention Windows layers do not use) removes the
  directory's entries that came from the parent.
* A directory entry that repeats an existing directory updates its metadata
  and keeps its children (directories may arrive after their children; missing
  parents are created with directory defaults: DIRECTORY attribute, NULL-DACL
  descriptor, zero times). A regular file that repeats an existing file
  replaces it (tar semantics). Names that differ only in case from an existing
  one are an error: Windows cannot hold both. "Case" is the image's upcase
  table (Windows' rules), not ``str.upper`` (ß and SS are two names).
* Entry names (and hard link targets) must be valid UTF-8; other bytes are an
  error naming the entry, not turned into unpaired UTF-16 surrogates.
  Reserved DOS device names (CON, NUL, COM1, ...) are NT names like any other
  and are kept.
* Missing times: ``atime``, ``ctime`` and ``LIBARCHIVE.creationtime`` default to
  the modification time (as go-winio's backuptar does for creation time).
* ``MSWINDOWS.sd`` (SDDL text) is rejected with an error naming the entry and
  the record: no well-kept library converts SDDL to a binary descriptor on
  Linux (winacl 0.1.9 fails on plain aliases such as ``BA``). When an entry has
  both ``rawsd`` and ``sd``, ``rawsd`` wins.
* EA names are kept byte for byte as the tar spells them (NTFS stores them
  upper-case, so Windows exporters already write upper-case names); EA flags
  are not carried by the tar format and are written as 0.
* A reparse point that is not a symlink or mount point, or whose buffer is not
  what the importer would rebuild from the link target, is exported with an
  extra ``CIMFS.reparse`` record (base64 of the raw buffer), which the importer
  prefers, so that such images still round-trip exactly.
* Alternate data streams must come after their file (``file:stream`` or
  ``file:stream:$DATA``), as go-winio writes them.
"""

from __future__ import annotations

import base64
import errno as _errno
import io
import logging
import os
import stat as _stat
import tarfile
import time
from dataclasses import asdict, dataclass, field
from typing import BinaryIO, Callable, Dict, List, Optional, Sequence, Set, Tuple, Union

from . import _core
from ._tario import open_source
from ._times import filetime_from_unix_ns, unix_ns_from_filetime
from ._types import FileAttributes, FileInfo
from ._winfmt import (
    decode_eas,
    decode_reparse_point,
    encode_eas,
    encode_reparse_point,
    pax_from_filetime,
)
from .errors import CimError
from .image import Image
from .writer import Writer

__all__ = [
    "LayerError",
    "ImportSummary",
    "import_tar",
    "export_tar",
    "create_from_directory",
    "extract",
    "encode_eas",
    "decode_eas",
    "encode_reparse_point",
    "decode_reparse_point",
]

log = logging.getLogger("cimfs.layer")

PathLike = Union[str, "os.PathLike[str]"]
ProgressFn = Callable[[int, Optional[int], int], None]  # (bytes consumed, total or None, entries)

_DIR = int(FileAttributes.DIRECTORY)
_REPARSE = int(FileAttributes.REPARSE_POINT)
_ARCHIVE = int(FileAttributes.ARCHIVE)
_READONLY = int(FileAttributes.READONLY)

PAX_ATTR = "MSWINDOWS.fileattr"
PAX_RAWSD = "MSWINDOWS.rawsd"
PAX_SDDL = "MSWINDOWS.sd"
PAX_MOUNTPOINT = "MSWINDOWS.mountpoint"
PAX_XATTR = "MSWINDOWS.xattr."
PAX_CREATION = "LIBARCHIVE.creationtime"
PAX_REPARSE = "CIMFS.reparse"


class LayerError(CimError):
    """A layer tar (or host tree) cannot be imported, exported or extracted.

    Attributes: ``source`` (the tar or directory), ``entry`` (the tar entry or
    host path, "" when the problem is the archive as a whole), ``record`` (the
    PAX record at fault, or "").
    """

    def __init__(self, op: str, source: str, entry: str, reason: str, *, record: str = "",
                 cim: str = "", errno: Optional[int] = None) -> None:
        where = f"cim {op} {source}"  # the core's "cim <op> <subject>: ..." form
        if entry:
            where += f": entry '{entry}'"
        if record:
            where += f": record {record}"
        super().__init__(f"{where}: {reason}", cim=cim, op=op, reason=reason, errno=errno or _errno.EINVAL)
        self.source = source
        self.entry = entry
        self.record = record


@dataclass
class ImportSummary:
    """What :func:`import_tar`, :func:`create_from_directory`, :func:`export_tar`
    or :func:`extract` did. ``source`` is what was read and ``destination``
    what was written (the image for imports; the tar or directory otherwise)."""

    image: str = ""
    source: str = ""
    destination: str = ""
    compression: str = "none"
    entries: int = 0
    files: int = 0
    directories: int = 0
    implicit_directories: int = 0
    links: int = 0
    symlinks: int = 0
    streams: int = 0
    whiteouts: int = 0
    bytes: int = 0
    source_bytes: int = 0
    seconds: float = 0.0
    skipped: List[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def throughput(self) -> float:
        return self.bytes / self.seconds if self.seconds > 0 else 0.0


# --------------------------------------------------------------------------------------
# import


def _split_cim_path(cim_path: PathLike) -> Tuple[str, str]:
    p = os.fspath(cim_path)
    directory, name = os.path.split(p)
    if not name:
        raise LayerError("import", p, "", "the image path names a directory, not an image file")
    return directory or ".", name


def _run_import(w: Writer, parent_path: Optional[str], reader: BinaryIO, counter, total: Optional[int],
                buffer_size: int, progress: Optional[ProgressFn], summary: ImportSummary, display: str) -> None:
    """The tar's entries into ``w`` by the C++ importer, which calls back here only
    to read (decompressed) input (and report progress) and to log."""
    imp = _core.LayerImporter(w._core, parent_path, buffer_size)
    log_fn = log.debug if log.isEnabledFor(logging.DEBUG) else None
    source_readinto = getattr(reader, "readinto", None)
    last_report = time.monotonic()

    def readinto(view: memoryview) -> int:
        nonlocal last_report
        if source_readinto is not None:
            n = source_readinto(view) or 0
        else:
            data = reader.read(len(view))
            n = len(data)
            view[:n] = data
        if progress is not None:
            now = time.monotonic()
            if now - last_report >= 0.2 or not n:
                last_report = now
                progress(counter.consumed, total, imp.entries)
        return n

    try:
        imp.run(readinto, log_fn)
        if progress is not None:
            progress(counter.consumed, total, imp.entries)
    except _core.LayerImportFailure as ex:
        entry, record, reason = ex.args
        raise LayerError("import", display, entry, reason, record=record, cim=w.path) from None
    except CimError:
        raise
    except (EOFError, OSError) as ex:
        raise LayerError("import", display, "", f"reading the input failed: {ex}", cim=w.path) from None
    except Exception as ex:  # decompressor errors (zstd, lzma) are not OSErrors
        raise LayerError("import", display, "", f"reading the input failed: {type(ex).__name__}: {ex}",
                         cim=w.path) from None
    finally:
        for k, v in imp.stats().items():
            setattr(summary, k, v)


def import_tar(
    source: Union[PathLike, BinaryIO],
    cim_path: PathLike,
    *,
    parent: Optional[PathLike] = None,
    overwrite: bool = False,
    region_set: Optional[str] = None,
    format_version: int = 3,
    buffer_size: int = 1 << 20,
    progress: Optional[ProgressFn] = None,
) -> ImportSummary:
    """Import a Windows container layer tar into a new image ``cim_path``.

    ``source`` is a path (``"-"`` reads standard input), or a binary file
    object or pipe; plain, gzip, zstd, bzip2 and xz are told apart by their
    first bytes. ``parent`` names an image in the same directory to fork
    (the layer below); whiteouts then remove its paths. The image directory is
    created if missing. On any error nothing of the new image remains and a
    :class:`LayerError` (a :class:`CimError`) names the entry and the problem.

    ``progress(consumed, total, entries)`` is called a few times a second with
    the source bytes read so far (compressed) and the source size when known.
    """
    t0 = time.perf_counter()
    directory, name = _split_cim_path(cim_path)
    image_path = os.path.join(directory, name)
    summary = ImportSummary(image=image_path, destination=image_path)
    if os.path.lexists(image_path) and not overwrite:
        raise LayerError("import", os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<stream>",
                         "", f"the image {image_path} already exists (overwrite it with --force / overwrite=True)",
                         errno=_errno.EEXIST)
    reader, counter, compression, total, display, closers = open_source(source)
    summary.source = display
    summary.compression = compression
    made_dir = None
    try:
        if not os.path.isdir(directory):
            made_dir = _makedirs(directory)
        if os.path.lexists(image_path):
            _core.destroy(image_path, False)
        parent_name = parent_path = None
        if parent is not None:
            parent_name = os.fspath(parent)
            pdir, pname = os.path.split(parent_name)
            if pdir and os.path.abspath(pdir) != os.path.abspath(directory):
                raise LayerError("import", display, "",
                                 f"the parent image {parent_name} must be in the image's directory {directory}")
            parent_name = pname
            parent_path = os.path.join(directory, pname)
        log.info("importing %s (%s) into %s", display, compression, image_path)
        w = Writer(directory, name, parent=parent_name, region_set=region_set, format_version=format_version)
        with w:
            _run_import(w, parent_path, reader, counter, total, buffer_size, progress, summary, display)
    except BaseException:
        if made_dir is not None:
            _remove_empty_dirs(made_dir, directory)
        raise
    finally:
        for c in closers:
            try:
                c()
            except Exception:
                pass
    summary.source_bytes = counter.consumed
    summary.seconds = time.perf_counter() - t0
    log.info("imported %d files, %d directories, %d links, %d symlinks, %d streams, %d bytes in %.2f s",
             summary.files, summary.directories, summary.links, summary.symlinks, summary.streams,
             summary.bytes, summary.seconds)
    return summary


def _makedirs(directory: str) -> str:
    """Create ``directory`` and missing parents; returns the top-most one created."""
    top = os.path.abspath(directory)
    while not os.path.isdir(os.path.dirname(top)) and os.path.dirname(top) != top:
        top = os.path.dirname(top)
    os.makedirs(directory, exist_ok=True)
    return top


def _remove_empty_dirs(top: str, leaf: str) -> None:
    d = os.path.abspath(leaf)
    while True:
        try:
            os.rmdir(d)
        except OSError:
            return
        if d == top:
            return
        d = os.path.dirname(d)


# --------------------------------------------------------------------------------------
# export


def _pax_for(img: Image, path: str, st, tag_reparse: Optional[bytes] = None) -> Dict[str, str]:
    pax = {
        PAX_ATTR: str(st.attributes),
        "mtime": pax_from_filetime(st.last_write_time),
        "atime": pax_from_filetime(st.last_access_time),
        "ctime": pax_from_filetime(st.change_time),
        PAX_CREATION: pax_from_filetime(st.creation_time),
    }
    sd = img.security_descriptor(path)
    if sd:
        pax[PAX_RAWSD] = base64.b64encode(sd).decode("ascii")
    if st.ea_length:
        try:
            for name, value, _flags in decode_eas(img.extended_attributes(path)):
                pax[PAX_XATTR + name] = base64.b64encode(value).decode("ascii")
        except ValueError as ex:
            raise LayerError("export", img.path, path, f"malformed extended attributes: {ex}") from None
    return pax


def export_tar(
    cim_path: PathLike,
    out: Union[PathLike, BinaryIO],
    *,
    compression: str = "none",
    progress: Optional[ProgressFn] = None,
) -> ImportSummary:
    """Write image ``cim_path`` as a Windows layer tar (PAX format) to ``out``
    (a path, ``"-"`` for standard output, or a binary file object).

    Every file and directory gets ``MSWINDOWS.fileattr``, four times
    (``mtime``/``atime``/``ctime``/``LIBARCHIVE.creationtime``, exact to
    100 ns), ``MSWINDOWS.rawsd`` and ``MSWINDOWS.xattr.*``; hard links become
    link entries to the first path, reparse points symlink entries (junctions
    with ``MSWINDOWS.mountpoint``), alternate data streams ``file:stream``
    entries right after their file. A root with metadata of its own is written
    as ``./``. ``compression`` is "none", "gzip" or "zstd". On error a partly
    written output file is removed.
    """
    t0 = time.perf_counter()
    summary = ImportSummary(image=os.fspath(cim_path), source=os.fspath(cim_path), compression=compression)
    closers: List[Callable[[], None]] = []
    out_path: Optional[str] = None
    if isinstance(out, (str, os.PathLike)):
        out_path = os.fspath(out)
        if out_path == "-":
            import sys

            fobj: BinaryIO = sys.stdout.buffer
            out_path = None
        else:
            fobj = io.open(out_path, "wb")
            closers.append(fobj.close)
    else:
        fobj = out
    summary.destination = out_path or "<stream>"
    ok = False
    try:
        if compression == "gzip":
            try:
                from isal import igzip as _gz
            except ImportError:
                import gzip as _gz  # type: ignore[no-redef]
            gz = _gz.GzipFile(fileobj=fobj, mode="wb", compresslevel=1)  # type: ignore[call-arg]
            closers.insert(0, gz.close)
            fobj = gz  # type: ignore[assignment]
        elif compression == "zstd":
            import zstandard

            z = zstandard.ZstdCompressor(level=3, threads=-1, write_checksum=True).stream_writer(fobj, closefd=False)
            closers.insert(0, z.close)
            fobj = z  # type: ignore[assignment]
        elif compression != "none":
            raise ValueError(f"compression must be none, gzip or zstd, not {compression!r}")
        with Image(cim_path) as img:
            tar = tarfile.open(fileobj=fobj, mode="w|", format=tarfile.PAX_FORMAT, bufsize=1 << 20)
            try:
                _export(img, tar, summary, progress)
            finally:
                tar.close()
        ok = True
    finally:
        for c in closers:
            try:
                c()
            except Exception:
                if ok:
                    raise
        if not ok and out_path is not None:
            try:
                os.unlink(out_path)
            except OSError:
                pass
    summary.seconds = time.perf_counter() - t0
    return summary


def _tarinfo(name: str, kind: bytes, pax: Dict[str, str], size: int = 0, linkname: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.size = size
    ti.linkname = linkname
    ti.mode = 0o755 if kind in (tarfile.DIRTYPE, tarfile.SYMTYPE) else 0o644
    ti.mtime = 0
    ti.pax_headers = pax
    return ti


class _Reading(io.RawIOBase):
    def __init__(self, f, on_read):
        self._f = f
        self._on = on_read

    def readable(self):
        return True

    def readinto(self, b):
        n = self._f.readinto(b)
        self._on(n)
        return n


def _export(img: Image, tar: tarfile.TarFile, s: ImportSummary, progress: Optional[ProgressFn]) -> None:
    seen: Dict[int, str] = {}
    done = [0]
    total = None

    def tick(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(done[0], total, s.entries)

    root = img.stat("")
    root_sd = img.security_descriptor("")
    if root_sd or root.creation_time or root.last_write_time or root.ea_length or \
            (root.attributes & ~_DIR):
        tar.addfile(_tarinfo("./", tarfile.DIRTYPE, _pax_for(img, "", root)))
        s.entries += 1
    for dirpath, dirnames, filenames in img.walk(""):
        for name in _ordered(img, dirpath, dirnames, filenames):
            path = dirpath + "\\" + name if dirpath else name
            tarname = path.replace("\\", "/")
            st = img.stat(path)
            s.entries += 1
            if st.is_reparse_point:
                raw = img.reparse_data(path)
                pax = _pax_for(img, path, st)
                rp = None
                try:
                    rp = decode_reparse_point(raw)
                except ValueError:
                    rp = None
                if rp is not None:
                    target = rp.target
                    if rp.is_mount_point:
                        pax[PAX_MOUNTPOINT] = "1"
                    try:
                        rebuilt = encode_reparse_point(target, rp.is_mount_point)
                    except ValueError:
                        rebuilt = b""
                    if rebuilt != raw:
                        pax[PAX_REPARSE] = base64.b64encode(raw).decode("ascii")
                else:
                    target = f"reparse-tag-{st.reparse_tag:08x}"
                    pax[PAX_REPARSE] = base64.b64encode(raw).decode("ascii")
                tar.addfile(_tarinfo(tarname, tarfile.SYMTYPE, pax, linkname=target))
                s.symlinks += 1
                if st.is_directory:
                    # A directory reparse point keeps its own children in the image.
                    pass
                continue
            if st.is_directory:
                tar.addfile(_tarinfo(tarname + "/", tarfile.DIRTYPE, _pax_for(img, path, st)))
                s.directories += 1
                continue
            first = seen.get(st.file_id) if st.link_count > 1 else None
            if first is not None:
                tar.addfile(_tarinfo(tarname, tarfile.LNKTYPE, _pax_for(img, path, st), linkname=first))
                s.links += 1
                continue
            if st.link_count > 1:
                seen[st.file_id] = tarname
            with img.open(path) as f:
                tar.addfile(_tarinfo(tarname, tarfile.REGTYPE, _pax_for(img, path, st), size=st.size),
                            _Reading(f, tick) if st.size else None)
            s.files += 1
            s.bytes += st.size
            for sname, ssize in img.streams(path).items():
                with img.open(path + ":" + sname) as f:
                    spax = {"mtime": pax_from_filetime(st.last_write_time)}
                    tar.addfile(_tarinfo(tarname + ":" + sname, tarfile.REGTYPE, spax, size=ssize),
                                _Reading(f, tick) if ssize else None)
                s.streams += 1
                s.bytes += ssize


def _ordered(img: Image, dirpath: str, dirnames: List[str], filenames: List[str]) -> List[str]:
    """The directory's entries in stored order; reparse-point directories are not descended."""
    order = img.listdir(dirpath)
    # img.walk descends into every directory; reparse-point directories are written as symlinks
    # and their (normally absent) children still get walked, which is what a layer holds.
    return order


# --------------------------------------------------------------------------------------
# host directory -> image


def _host_attrs(st: os.stat_result, is_dir: bool) -> int:
    attrs = _DIR if is_dir else _ARCHIVE
    if not is_dir and not (st.st_mode & _stat.S_IWUSR):
        attrs |= _READONLY
    return attrs


def _host_times(st: os.stat_result) -> Tuple[int, int, int, int]:
    mtime = filetime_from_unix_ns(st.st_mtime_ns)
    birth = getattr(st, "st_birthtime_ns", None)
    return (filetime_from_unix_ns(birth) if birth else mtime, mtime, filetime_from_unix_ns(st.st_ctime_ns),
            filetime_from_unix_ns(st.st_atime_ns))


def create_from_directory(
    directory: PathLike,
    cim_path: PathLike,
    *,
    overwrite: bool = False,
    region_set: Optional[str] = None,
    progress: Optional[ProgressFn] = None,
) -> ImportSummary:
    """Build image ``cim_path`` from the host tree under ``directory``.

    POSIX metadata maps to Windows: directories get DIRECTORY, files ARCHIVE
    (and READONLY when the owner may not write), mtime/atime/ctime become
    last-write/last-access/change times and the creation time is the birth time
    where the platform reports one, else the mtime. Symlinks become symlink
    reparse points (directory symlinks when they point at a directory inside
    the tree, relative when the target is relative); hard links stay hard
    links. Sockets, FIFOs and devices are skipped with a warning. Names that
    Windows cannot hold (``:`` and the like, or names that differ only in case)
    fail with an error naming the host path. The tree is read without
    following symlinks.
    """
    t0 = time.perf_counter()
    top = os.fspath(directory)
    if not os.path.isdir(top):
        raise LayerError("create", top, "", "not a directory", errno=_errno.ENOTDIR)
    dir_, name = _split_cim_path(cim_path)
    image_path = os.path.join(dir_, name)
    if os.path.lexists(image_path) and not overwrite:
        raise LayerError("create", top, "", f"the image {image_path} already exists (use --force)",
                         errno=_errno.EEXIST)
    summary = ImportSummary(image=image_path, source=top, destination=image_path)
    made_dir = None
    try:
        if not os.path.isdir(dir_):
            made_dir = _makedirs(dir_)
        if os.path.lexists(image_path):
            _core.destroy(image_path, False)
        abs_image_dir = os.path.realpath(dir_)
        with Writer(dir_, name, region_set=region_set) as w:
            links: Dict[Tuple[int, int], str] = {}
            buf = bytearray(1 << 20)
            view = memoryview(buf)
            stack = [("", top)]
            while stack:
                rel, host = stack.pop()
                try:
                    entries = sorted(os.scandir(host), key=lambda d: d.name)
                except OSError as ex:
                    raise LayerError("create", top, host, ex.strerror or str(ex), errno=ex.errno) from None
                subdirs = []
                for d in entries:
                    hpath = d.path
                    ipath = rel + "\\" + d.name if rel else d.name
                    summary.entries += 1
                    try:
                        st = d.stat(follow_symlinks=False)
                        if _stat.S_ISDIR(st.st_mode):
                            if os.path.realpath(hpath) == abs_image_dir:
                                summary.skipped.append(hpath)
                                log.warning("skipping %s: it holds the image being written", hpath)
                                continue
                            c, m, ch, a = _host_times(st)
                            w.add_directory(ipath, FileInfo(_DIR, c, m, ch, a))
                            summary.directories += 1
                            subdirs.append((ipath, hpath))
                        elif _stat.S_ISLNK(st.st_mode):
                            target = os.readlink(hpath)
                            attrs = _ARCHIVE | _REPARSE
                            if os.path.isdir(hpath):
                                attrs = _DIR | _REPARSE
                            c, m, ch, a = _host_times(st)
                            w.add_file(ipath, FileInfo(attrs, c, m, ch, a,
                                                       reparse_data=encode_reparse_point(target)))
                            summary.symlinks += 1
                        elif _stat.S_ISREG(st.st_mode):
                            ino = (st.st_dev, st.st_ino)
                            if st.st_nlink > 1 and ino in links:
                                w.add_link(links[ino], ipath)
                                summary.links += 1
                                continue
                            c, m, ch, a = _host_times(st)
                            with io.open(hpath, "rb", buffering=0) as f:
                                size = os.fstat(f.fileno()).st_size
                                w.add_file(ipath, FileInfo(_host_attrs(st, False), c, m, ch, a), size=size)
                                left = size
                                while left:
                                    n = f.readinto(view[: min(left, len(buf))])
                                    if not n:
                                        raise LayerError("create", top, hpath, "the file shrank while being read")
                                    w._core.write(view[:n])
                                    left -= n
                                w._core.close_stream()
                            if st.st_nlink > 1:
                                links[ino] = ipath
                            summary.files += 1
                            summary.bytes += size
                        else:
                            summary.skipped.append(hpath)
                            log.warning("skipping %s: sockets, FIFOs and devices have no Windows equivalent", hpath)
                    except LayerError:
                        raise
                    except CimError as ex:
                        raise LayerError("create", top, hpath, ex.reason, cim=image_path) from None
                    except OSError as ex:
                        raise LayerError("create", top, hpath, ex.strerror or str(ex), errno=ex.errno) from None
                    if progress is not None and summary.entries % 256 == 0:
                        progress(summary.bytes, None, summary.entries)
                stack.extend(reversed(subdirs))
    except BaseException:
        if made_dir is not None:
            _remove_empty_dirs(made_dir, dir_)
        raise
    summary.seconds = time.perf_counter() - t0
    return summary


# --------------------------------------------------------------------------------------
# image -> host directory

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)


def _safe_name(name: str) -> bool:
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        return False
    return name.isascii() or _host_encodable(name)


def _host_encodable(text: str) -> bool:
    """False for names with no host form (unpaired UTF-16 surrogates other than the
    surrogateescape range)."""
    try:
        os.fsencode(text)
        return True
    except UnicodeEncodeError:
        return False


def _host_link_target(rp) -> str:
    t = rp.target
    if rp.relative:
        return t.replace("\\", "/")
    return t


def extract(
    cim_path: PathLike,
    dest: PathLike,
    paths: Sequence[str] = (),
    *,
    overwrite: bool = False,
    progress: Optional[ProgressFn] = None,
) -> ImportSummary:
    """Write the image's tree (or only ``paths`` and what they hold) under ``dest``.

    Refuses (``EEXIST``, before writing that entry) to replace a file, link or
    symlink already in ``dest`` unless ``overwrite=True``; existing directories
    are merged into. Where the OS tells free space, refuses (``ENOSPC``) up
    front when the data to write does not fit.

    Never writes outside ``dest``: every directory is opened relative to its
    parent with ``O_NOFOLLOW`` (a symlink planted in ``dest`` is refused, not
    followed), files are created with ``O_NOFOLLOW`` (an existing file is
    replaced by unlinking it first, never written through), and names that are
    empty, ``.``/``..`` or contain a separator or NUL are skipped with a
    warning. Symlinks and junctions become host symlinks (relative targets with
    ``/``), hard links hard links; times are set (directories after their
    contents); READONLY files lose their write bits. Alternate data streams have
    no place on a POSIX file system and are skipped with a warning.
    """
    t0 = time.perf_counter()
    dest_s = os.fspath(dest)
    summary = ImportSummary(image=os.fspath(cim_path), source=os.fspath(cim_path), destination=dest_s)
    with Image(cim_path) as img:
        _check_free_space(img, paths, dest_s)
    try:
        os.makedirs(dest_s, exist_ok=True)
        root_fd = os.open(dest_s, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
    except OSError as e:
        raise LayerError("extract", os.fspath(cim_path), "", f"destination {dest_s}: {e.strerror or e}",
                         errno=e.errno) from None
    done = [0]
    try:
        with Image(cim_path) as img:
            ex = _Extractor(img, root_fd, summary, progress, done, overwrite)
            if not paths:
                ex.tree("", [], root_fd)
            else:
                for p in paths:
                    ip = p.replace("/", "\\").strip("\\")
                    if not img.exists(ip):
                        raise LayerError("extract", img.path, p, "no such file or directory in the image",
                                         errno=_errno.ENOENT)
                    parts = [x for x in ip.split("\\") if x]
                    if any(not _safe_name(x) for x in parts):
                        raise LayerError("extract", img.path, p, "unsafe path")
                    ex.subtree(ip, parts)
            ex.finish()
    finally:
        os.close(root_fd)
    summary.seconds = time.perf_counter() - t0
    return summary


def _check_free_space(img: Image, paths: Sequence[str], dest: str) -> None:
    """ENOSPC before anything is written when the file data cannot fit (where
    the OS reports free space; each hard-linked file counted once)."""
    if not hasattr(os, "statvfs"):
        return
    probe = os.path.abspath(dest)
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    try:
        vfs = os.statvfs(probe)
    except OSError:
        return
    free = vfs.f_bavail * vfs.f_frsize
    roots = [p.replace("/", "\\").strip("\\") for p in paths] or [""]
    seen: Set[int] = set()
    needed = 0
    stack = [r for r in roots if img.exists(r)]
    while stack:
        ip = stack.pop()
        st = img.stat(ip)
        if st.file_id in seen:
            continue
        seen.add(st.file_id)
        if st.is_directory and not st.is_reparse_point:
            stack.extend(ip + "\\" + n if ip else n for n in img.listdir(ip))
        elif not st.is_reparse_point:
            needed += st.size
            if needed > free:
                raise LayerError("extract", img.path, "",
                                 f"{dest} has {free} bytes free; the files to extract need more "
                                 f"(at least {needed} bytes)", errno=_errno.ENOSPC)


class _Extractor:
    def __init__(self, img: Image, root_fd: int, summary: ImportSummary, progress, done,
                 overwrite: bool = False) -> None:
        self.overwrite = overwrite
        self.img = img
        self.root = root_fd
        self.s = summary
        self.progress = progress
        self.done = done
        self.links: Dict[int, Tuple[List[str], str]] = {}
        self.dir_times: List[Tuple[List[str], int, int]] = []
        self.buf = bytearray(1 << 20)
        self.active: Set[int] = {img.stat("").file_id}  # directories extracted (a damaged image may loop)

    def open_dir(self, parts: List[str], create: bool = True) -> int:
        fd = os.dup(self.root)
        try:
            for p in parts:
                if create:
                    try:
                        os.mkdir(p, 0o755, dir_fd=fd)
                    except FileExistsError:
                        pass
                nfd = os.open(p, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC, dir_fd=fd)
                os.close(fd)
                fd = nfd
            return fd
        except OSError as e:
            os.close(fd)
            raise LayerError("extract", self.img.path, "\\".join(parts),
                             f"cannot open the destination directory ({e.strerror}); "
                             "a symlink or file is in the way") from None

    def subtree(self, ip: str, parts: List[str]) -> None:
        st = self.img.stat(ip)
        if st.is_directory and not st.is_reparse_point:
            fd = self.open_dir(parts)
            try:
                self.tree(ip, parts, fd)
            finally:
                os.close(fd)
            self.dir_times.append((parts, st.last_access_time, st.last_write_time))
        else:
            fd = self.open_dir(parts[:-1])
            try:
                self.entry(ip, parts, parts[-1], fd, st)
            finally:
                os.close(fd)

    def tree(self, ip: str, parts: List[str], fd: int) -> None:
        """Extract the directory ``ip`` (open as ``fd``) and everything below it.

        Iterative, not recursive (a valid image may nest thousands of levels):
        each directory below is reopened from the destination root, one
        ``O_NOFOLLOW`` step at a time, when its turn comes."""
        work: List[Tuple[str, List[str]]] = []
        self._one_directory(ip, parts, fd, work)
        while work:
            ip, parts = work.pop()
            dfd = self.open_dir(parts, create=False)
            try:
                self._one_directory(ip, parts, dfd, work)
            finally:
                os.close(dfd)

    def _one_directory(self, ip: str, parts: List[str], fd: int, work: List[Tuple[str, List[str]]]) -> None:
        subdirs = []
        for name, st in self.img.scandir(ip):
            child = ip + "\\" + name if ip else name
            if not _safe_name(name):
                log.warning("skipping %r: unsafe name", child)
                self.s.skipped.append(child)
                continue
            cparts = parts + [name]
            if st.is_directory and not st.is_reparse_point:
                if st.file_id in self.active:
                    log.warning("skipping %r: a directory reached twice (damaged image)", child)
                    self.s.skipped.append(child)
                    continue
                self.active.add(st.file_id)
                try:
                    os.mkdir(name, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                try:  # a planted symlink or file in the way is refused now, before anything below
                    os.close(os.open(name, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC, dir_fd=fd))
                except OSError as e:
                    raise LayerError("extract", self.img.path, child,
                                     f"cannot enter the destination directory ({e.strerror}); "
                                     "a symlink or file is in the way") from None
                self.s.directories += 1
                self.dir_times.append((cparts, st.last_access_time, st.last_write_time))
                subdirs.append((child, cparts))
            else:
                self.entry(child, cparts, name, fd, st)
        work.extend(reversed(subdirs))

    def _clear(self, name: str, fd: int) -> None:
        if not self.overwrite:
            try:
                os.lstat(name, dir_fd=fd)
            except FileNotFoundError:
                return
            raise LayerError("extract", self.img.path, name,
                             "already exists in the destination (overwrite it with --force / overwrite=True)",
                             errno=_errno.EEXIST)
        try:
            os.unlink(name, dir_fd=fd)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            raise
        except PermissionError:
            # Linux reports EISDIR as EPERM for unlink on directories on some systems.
            raise

    def entry(self, ip: str, parts: List[str], name: str, fd: int, st) -> None:
        s = self.s
        times = (unix_ns_from_filetime(st.last_access_time), unix_ns_from_filetime(st.last_write_time))
        try:
            if st.is_reparse_point:
                raw = self.img.reparse_data(ip)
                rp = None
                try:
                    rp = decode_reparse_point(raw)
                except ValueError:
                    pass
                if rp is None:
                    log.warning("skipping %s: reparse tag %#x has no host equivalent", ip, st.reparse_tag)
                    s.skipped.append(ip)
                    return
                if st.is_directory:
                    hidden = self.img.listdir(ip)
                    if hidden:
                        log.warning("%s: a directory reparse point holding %d entries; they are not extracted "
                                    "(the host symlink replaces the directory)", ip, len(hidden))
                        s.skipped.extend(ip + "\\" + n for n in hidden)
                target = _host_link_target(rp)
                if "\0" in target or not _host_encodable(target):
                    log.warning("skipping %s: its link target has no host form", ip)
                    s.skipped.append(ip)
                    return
                self._clear(name, fd)
                os.symlink(target, name, dir_fd=fd)
                _utime(name, fd, times)
                s.symlinks += 1
                return
            first = self.links.get(st.file_id) if st.link_count > 1 else None
            if first is not None:
                fparts, fname = first
                self._clear(name, fd)
                sfd = self.open_dir(fparts, create=False)
                try:
                    os.link(fname, name, src_dir_fd=sfd, dst_dir_fd=fd, follow_symlinks=False)
                finally:
                    os.close(sfd)
                s.links += 1
                return
            self._clear(name, fd)
            mode = 0o444 if st.attributes & _READONLY else 0o644
            ofd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY,
                          0o600, dir_fd=fd)
            try:
                view = memoryview(self.buf)
                with self.img.open(ip) as f:
                    while True:
                        n = f.readinto(view)
                        if not n:
                            break
                        mv = view[:n]
                        while mv:
                            k = os.write(ofd, mv)
                            mv = mv[k:]
                        s.bytes += n
                        self.done[0] += n
                os.fchmod(ofd, mode)
                os.utime(ofd, ns=times)
            finally:
                os.close(ofd)
            if st.link_count > 1:
                self.links[st.file_id] = (parts[:-1], name)
            s.files += 1
            streams = self.img.streams(ip)
            if streams:
                log.warning("%s: %d alternate data stream(s) not extracted (no host equivalent)", ip, len(streams))
                s.streams += len(streams)
                s.skipped.extend(f"{ip}:{n}" for n in streams)
            if self.progress is not None:
                self.progress(self.done[0], None, s.files)
        except LayerError:
            raise
        except OSError as e:
            raise LayerError("extract", self.img.path, ip, e.strerror or str(e), errno=e.errno) from None

    def finish(self) -> None:
        for parts, atime, mtime in reversed(self.dir_times):
            fd = self.open_dir(parts[:-1], create=False)
            try:
                _utime(parts[-1], fd, (unix_ns_from_filetime(atime), unix_ns_from_filetime(mtime)))
            finally:
                os.close(fd)


def _utime(name: str, fd: int, times: Tuple[int, int]) -> None:
    try:
        os.utime(name, ns=times, dir_fd=fd, follow_symlinks=False)
    except (NotImplementedError, OSError) as e:
        log.debug("cannot set times on %s: %s", name, e)
