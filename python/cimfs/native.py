"""The native backend: Windows' own ``cimfs.dll`` (mounting, block, merged and
verified images).

Everything here needs Windows with CimFS. Elsewhere each call raises
:class:`cimfs.UnsupportedError` (a :class:`cimfs.CimError` and a
:class:`NotImplementedError`) saying which Windows build it needs, and the
``is_*_supported()`` checks return False. The format of block, merged and
verified images is not public, so the portable backend cannot write them.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import Optional, Sequence, Union

from . import _core

__all__ = [
    "BlockImage",
    "Capabilities",
    "CreateFlags",
    "Mount",
    "MountFlags",
    "capabilities",
    "create_block",
    "default_backend",
    "is_block_supported",
    "is_merged_supported",
    "is_supported",
    "is_verified_supported",
    "merge_block",
    "mount",
    "mount_merged",
    "mount_verified",
    "seal",
    "unmount",
    "verification_info",
]

_PathLike = Union[str, "os.PathLike[str]"]


class MountFlags(enum.IntFlag):
    """``CIM_MOUNT_IMAGE_FLAGS`` of cimfs.h."""

    NONE = 0x0
    ENABLE_DAX = 0x2
    BLOCK_DEVICE = 0x10
    SINGLE_FILE = 0x20
    VERIFIED = 0x80


class CreateFlags(enum.IntFlag):
    """``CIM_CREATE_IMAGE_FLAGS`` of cimfs.h (``CimCreateImage2``)."""

    NONE = 0x0
    DO_NOT_EXPAND_PE_IMAGES = 0x1
    FIXED_SIZE_CHUNKS = 0x2
    BLOCK_DEVICE = 0x4
    SINGLE_FILE = 0x8
    CONSISTENT = 0x10
    VERIFIED = 0x40


@dataclass(frozen=True)
class Capabilities:
    """What this machine's CimFS can do (hcsshim's checks: OS build and revision
    via RtlGetVersion and the registry, and whether cimfs.dll loads)."""

    supported: bool
    block: bool
    merged: bool
    verified: bool
    build: int
    revision: int
    reason: str
    cimfs_dll: bool
    cimwriter_dll: bool


def capabilities() -> Capabilities:
    return Capabilities(**_core.native_capabilities())


def is_supported() -> bool:
    """cimfs.dll is usable (Windows Server 2022 build 20348.2031 or later)."""
    return capabilities().supported


def is_block_supported() -> bool:
    """Block-device and single-file CIMs can be created and mounted."""
    return capabilities().block


def is_merged_supported() -> bool:
    """Merged CIMs (tombstones, merge links, merge mounts) are available."""
    return capabilities().merged


def is_verified_supported() -> bool:
    """Verified (sealed) CIMs are available."""
    return capabilities().verified


def default_backend() -> str:
    """The backend ``backend="auto"`` picks for ordinary images.

    ``"portable"`` unless the environment variable ``CIMFS_BACKEND`` says
    ``native`` (then writing fails with UnsupportedError where cimfs.dll is not
    usable, rather than quietly using the other writer) — the portable writer gives the same
    bytes on every OS and honours every option; Windows mounts its images. The
    native-only features (block, merged, verified images, mounting) always use
    cimfs.dll.
    """
    choice = os.environ.get("CIMFS_BACKEND", "").strip().lower() or "portable"
    if choice not in ("portable", "native"):
        raise ValueError(f"CIMFS_BACKEND must be 'portable' or 'native', not {choice!r}")
    return choice  # "native" without cimfs.dll fails where it is used, saying why


_BLOCK_TYPES = {"none": 0, "file": 1, "single_file": 1, "device": 2, "block_device": 2}


@dataclass(frozen=True)
class BlockImage:
    """A CIM inside a block device or a block-formatted single file."""

    block_path: str
    name: str
    type: str = "file"  # "file" (single file) or "device"

    def _tuple(self):
        try:
            t = _BLOCK_TYPES[self.type]
        except KeyError:
            raise ValueError(f"block type must be 'file' or 'device', not {self.type!r}") from None
        return (t, os.fspath(self.block_path), self.name)


class Mount:
    """A mounted image. As a context manager it yields the volume path
    (``\\\\?\\Volume{guid}\\``) and dismounts on exit."""

    def __init__(self, volume: str, image: str) -> None:
        self.volume = volume
        self.image = image
        self._mounted = True

    def __enter__(self) -> str:
        return self.volume

    def __exit__(self, *exc) -> None:
        self.unmount()

    def __str__(self) -> str:
        return self.volume

    def __repr__(self) -> str:
        state = "mounted" if self._mounted else "dismounted"
        return f"<cimfs.Mount {self.image!r} at {self.volume!r} {state}>"

    def unmount(self) -> None:
        """Dismount (idempotent)."""
        if self._mounted:
            _core.dismount(self.volume)
            self._mounted = False


def mount(image: _PathLike, *, volume: Optional[str] = None, flags: int = MountFlags.NONE) -> Mount:
    """Mount ``DIR/NAME.cim`` (``CimMountImage``); ``volume`` fixes the volume GUID.

    For a block CIM pass ``BlockImage(...)`` paths as ``block_path + "\\\\" + name``
    with ``MountFlags.BLOCK_DEVICE`` or ``MountFlags.SINGLE_FILE``.
    """
    path = os.fspath(image)
    return Mount(_core.mount(path, int(flags), volume), path)


def mount_merged(
    merged: BlockImage,
    sources: Sequence[BlockImage],
    *,
    volume: Optional[str] = None,
    flags: int = MountFlags.NONE,
) -> Mount:
    """Mount a merged block CIM with its sources (topmost first) (``CimMergeMountImage``)."""
    v = _core.merge_mount(merged._tuple(), [s._tuple() for s in sources], int(flags), volume)
    return Mount(v, f"{merged.block_path}\\{merged.name}")


def mount_verified(
    image: BlockImage,
    root_hash: bytes,
    *,
    sources: Optional[Sequence[BlockImage]] = None,
    volume: Optional[str] = None,
    flags: int = MountFlags.NONE,
) -> Mount:
    """Mount a verified (sealed) block CIM, checking every read against
    ``root_hash`` (``CimMountVerifiedImage``; with ``sources``,
    ``CimMergeMountVerifiedImage``)."""
    if sources:
        v = _core.merge_mount_verified(image._tuple(), [s._tuple() for s in sources], bytes(root_hash),
                                       int(flags), volume)
    else:
        v = _core.mount_verified(image._tuple(), bytes(root_hash), int(flags), volume)
    return Mount(v, f"{image.block_path}\\{image.name}")


def unmount(volume: Union[str, Mount]) -> None:
    """Dismount a volume: accepts ``\\\\?\\Volume{guid}\\`` (trailing backslash
    optional), ``{guid}``, a bare GUID, or a :class:`Mount`."""
    if isinstance(volume, Mount):
        volume.unmount()
    else:
        _core.dismount(str(volume))


def create_block(
    block_path: _PathLike,
    name: str,
    *,
    type: str = "file",
    consistent: bool = True,
    verified: bool = False,
):
    """A :class:`cimfs.Writer` for a CIM inside a block device or single file
    (``CimCreateImage2`` with the block flags); ``verified=True`` seals it when
    the writer commits."""
    from .writer import Writer

    core = _core.create_block_writer(BlockImage(os.fspath(block_path), name, type)._tuple(), consistent, verified)
    return Writer._from_core(core, f"{os.fspath(block_path)}\\{name}", "native")


def merge_block(
    merged: BlockImage,
    sources: Sequence[BlockImage],
    *,
    consistent: bool = True,
    verified: bool = False,
) -> None:
    """Create the merged block CIM ``merged`` from ``sources`` (topmost first,
    the base last; at least two), as hcsshim's MergeBlockCIMs does."""
    if len(sources) < 2:
        raise ValueError("merging needs at least two source images")
    _core.merge_block_images(merged._tuple(), [s._tuple() for s in sources], consistent, verified)


def seal(block_path: _PathLike) -> bytes:
    """Seal a verified block CIM (``CimSealImage``); returns its root hash."""
    return _core.seal_image(os.fspath(block_path))


def verification_info(block_path: _PathLike) -> dict:
    """``CimGetVerificationInformation``: sealed, root_hash, signature, fixed_header_size."""
    return _core.verification_info(os.fspath(block_path))

