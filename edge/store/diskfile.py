"""The disk tier's file format and the blocking file operations, each run as ONE executor call.

An object file is `root/objects/<hex[0:2]>/<hex>` (the key's hex, never a URL):

    b"EDGC" | u32 version | u32 meta_length | u32 body_offset | meta (msgpack) | zeros | body

The header carries body_offset so a writer can stream the body at a reserved offset before
the final meta (body_length, checksum) is known and write that meta in place at commit;
only a meta larger than the reservation forces a copy of the body (copy_file_range). A file
is valid only if its size is exactly body_offset + body_length. Files are built in
`root/tmp/` and published with fsync + rename + directory fsync, so a crash leaves the old
object, the new one or nothing, never a half object.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import xxhash

from edge.store.entry import EntryMeta, MetaFormatError, pack_meta, unpack_meta

__all__ = [
    "FILE_VERSION",
    "MAGIC",
    "CorruptObject",
    "DiskUnusable",
    "ObjectInfo",
    "OpenStatus",
    "Opened",
    "Scan",
    "create_tmp",
    "discard_tmp",
    "object_path",
    "open_for_read",
    "prepare",
    "publish",
    "pwrite_all",
    "reserve_bytes",
    "rewrite_meta",
    "scan",
    "unlink_quietly",
    "verify_file",
]

MAGIC = b"EDGC"
FILE_VERSION = 1
HEADER = struct.Struct(">4sIII")  # magic, version, meta_length, body_offset
META_SLACK_BYTES = 512  # room for commit(meta) to grow the meta without copying the body
_IO_CHUNK = 1024 * 1024  # read size when hashing or copying in user space
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# The names the node writes, and so the only ones it deletes: tmp files (create_tmp) and
# object files are 32 hex digits; fan-out directories under objects/ are 2.
_OWN_NAME = re.compile(r"[0-9a-f]{32}")
_FANOUT_NAME = re.compile(r"[0-9a-f]{2}")


class CorruptObject(Exception):
    """An object file fails its header, size or checksum check."""


class DiskUnusable(Exception):
    """The cache directory cannot hold the disk tier; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Scan:
    """What `scan` found under the cache directory."""

    objects: list[ObjectInfo]  # valid objects, oldest first
    foreign: list[Path]  # entries the node did not write: left in place, reported


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What the index knows about one published object file."""

    meta: EntryMeta
    body_offset: int
    file_bytes: int  # body_offset + body_length: what the object costs against the budget


class OpenStatus(Enum):
    """The outcome of opening an object for reading."""

    OK = "ok"
    MISSING = "missing"  # removed or replaced between index lookup and open
    CORRUPT = "corrupt"  # bad header, wrong size or checksum mismatch


@dataclass(frozen=True, slots=True)
class Opened:
    """An open file descriptor and the info read from that very file (status OK), or why not."""

    status: OpenStatus
    fd: int = -1
    info: ObjectInfo | None = None


def object_path(root: Path, key: bytes) -> Path:
    """Where the object for `key` lives: objects/<hex[0:2]>/<hex>."""
    name = key.hex()
    return root / "objects" / name[:2] / name


def reserve_bytes(meta: EntryMeta) -> int:
    """The body offset a writer uses: room for the header and the final meta plus slack."""
    widest = meta.replace(body_length=2**63 - 1, checksum=2**64 - 1)
    return HEADER.size + len(pack_meta(widest)) + META_SLACK_BYTES


def _encode_head(packed: bytes, body_offset: int) -> bytes:
    head = HEADER.pack(MAGIC, FILE_VERSION, len(packed), body_offset) + packed
    return head + bytes(body_offset - len(head))


def create_tmp(root: Path, tmp: str = "tmp") -> tuple[int, Path]:
    """Creates a fresh file under tmp/ (a worker's own tmp-wN/, docs/workers.md); returns fd and path."""
    path = root / tmp / secrets.token_hex(16)  # the form _OWN_NAME matches
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, 0o644)
    return fd, path


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """Writes all of `data` at `offset`."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def discard_tmp(fd: int, path: Path) -> None:
    """Closes and deletes an unpublished tmp file."""
    try:
        os.close(fd)
    finally:
        unlink_quietly([path])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_range(src: int, src_offset: int, dst: int, dst_offset: int, length: int) -> None:
    # In-kernel copy where the filesystem allows; user-space chunks otherwise.
    done = 0
    if hasattr(os, "copy_file_range"):
        try:
            while done < length:
                n = os.copy_file_range(src, dst, length - done, src_offset + done, dst_offset + done)
                if n == 0:
                    raise CorruptObject("source ended early")
                done += n
            return
        except OSError:
            pass  # EXDEV, ENOSYS, EINVAL: fall back below from where it stopped
    while done < length:
        data = os.pread(src, min(_IO_CHUNK, length - done), src_offset + done)
        if not data:
            raise CorruptObject("source ended early")
        pwrite_all(dst, data, dst_offset + done)
        done += len(data)


def _rename_into_place(tmp: Path, final: Path) -> None:
    # The data is fsynced before the rename, and the directory after it: after a crash the
    # new name is either absent (old object or nothing) or names the complete new file.
    try:
        os.rename(tmp, final)
    except BaseException:
        unlink_quietly([tmp])
        raise
    _fsync_dir(final.parent)


def _copy_into_new(root: Path, src: int, src_offset: int, meta: EntryMeta, tmp: str) -> tuple[Path, int]:
    # Builds header + meta + a copy of the body in a new tmp file; returns it closed and fsynced.
    packed = pack_meta(meta)
    body_offset = HEADER.size + len(packed)
    fd, path = create_tmp(root, tmp)
    try:
        pwrite_all(fd, _encode_head(packed, body_offset), 0)
        _copy_range(src, src_offset, fd, body_offset, meta.body_length)
        os.fsync(fd)
    except BaseException:
        discard_tmp(fd, path)
        raise
    os.close(fd)
    return path, body_offset


def publish(root: Path, fd: int, tmp: Path, meta: EntryMeta, reserved: int) -> ObjectInfo:
    """Writes the final meta, fsyncs, renames the tmp file into place; always closes `fd`.

    On failure nothing is published and the tmp files are deleted.
    """
    final = object_path(root, meta.key)
    packed = pack_meta(meta)
    if HEADER.size + len(packed) <= reserved:
        try:
            pwrite_all(fd, _encode_head(packed, reserved), 0)
            os.fsync(fd)
        except BaseException:
            discard_tmp(fd, tmp)
            raise
        os.close(fd)
        _rename_into_place(tmp, final)
        return ObjectInfo(meta, reserved, reserved + meta.body_length)
    # The final meta outgrew the reservation: copy the body behind a fresh header.
    try:
        tmp2, body_offset = _copy_into_new(root, fd, reserved, meta, tmp.parent.name)
    finally:
        discard_tmp(fd, tmp)
    _rename_into_place(tmp2, final)
    return ObjectInfo(meta, body_offset, body_offset + meta.body_length)


def rewrite_meta(root: Path, old: ObjectInfo, meta: EntryMeta, tmp: str = "tmp") -> ObjectInfo:
    """Publishes a copy of the object with new meta (same tmp + fsync + rename discipline)."""
    final = object_path(root, meta.key)
    src = os.open(final, os.O_RDONLY | _O_CLOEXEC)
    try:
        made, body_offset = _copy_into_new(root, src, old.body_offset, meta, tmp)
    finally:
        os.close(src)
    _rename_into_place(made, final)
    return ObjectInfo(meta, body_offset, body_offset + meta.body_length)


def _read_info(fd: int) -> ObjectInfo:
    header = os.pread(fd, HEADER.size, 0)
    if len(header) != HEADER.size:
        raise CorruptObject("short header")
    magic, version, meta_length, body_offset = HEADER.unpack(header)
    if magic != MAGIC or version != FILE_VERSION:
        raise CorruptObject(f"bad magic or version {version}")
    if body_offset < HEADER.size + meta_length:
        raise CorruptObject("body offset inside the meta")
    packed = os.pread(fd, meta_length, HEADER.size)
    try:
        meta = unpack_meta(packed)
    except MetaFormatError as exc:
        raise CorruptObject(str(exc)) from exc
    size = os.fstat(fd).st_size
    if size != body_offset + meta.body_length:
        raise CorruptObject(f"size {size} != {body_offset} + {meta.body_length}")
    return ObjectInfo(meta, body_offset, size)


def _body_matches(fd: int, info: ObjectInfo) -> bool:
    hasher = xxhash.xxh3_64()
    offset, end = info.body_offset, info.file_bytes
    while offset < end:
        data = os.pread(fd, min(_IO_CHUNK, end - offset), offset)
        if not data:
            return False
        hasher.update(data)
        offset += len(data)
    return hasher.intdigest() == info.meta.checksum


def open_for_read(root: Path, key: bytes, verify: bool) -> Opened:
    """Opens the object, reads its header and meta and, if asked, checks the body checksum."""
    try:
        fd = os.open(object_path(root, key), os.O_RDONLY | _O_CLOEXEC)
    except FileNotFoundError:
        return Opened(OpenStatus.MISSING)
    try:
        info = _read_info(fd)
        if info.meta.key != key:
            raise CorruptObject("file holds another key")
        if verify and not _body_matches(fd, info):
            raise CorruptObject("checksum mismatch")
    except CorruptObject:
        os.close(fd)
        return Opened(OpenStatus.CORRUPT)
    except BaseException:
        os.close(fd)
        raise
    return Opened(OpenStatus.OK, fd, info)


def verify_file(root: Path, key: bytes) -> OpenStatus:
    """Checks one object's header, size and checksum."""
    opened = open_for_read(root, key, verify=True)
    if opened.status is OpenStatus.OK:
        os.close(opened.fd)
    return opened.status


@contextlib.contextmanager
def _step(what: str, advice: str) -> Iterator[None]:
    # One start-up step on the cache directory: an OSError becomes DiskUnusable saying what to do.
    try:
        yield
    except OSError as exc:
        raise DiskUnusable(f"{what} failed ({exc.strerror or exc}); {advice}") from exc


def prepare(root: Path, tmp: str = "tmp") -> None:
    """Makes `root` ready for the cache, or raises DiskUnusable saying what is wrong and what to do.

    Creates the directory and its tmp/ and objects/ fan-out, checks that the filesystem can
    fsync a directory, and writes, fsyncs and deletes one probe file under tmp/: a directory
    that cannot take writes fails here at start, not on the first fill.
    """
    if root.exists() and not root.is_dir():
        raise DiskUnusable(f"{root} is not a directory; point disk_dir (or --disk-dir) at a directory")
    with _step(f"creating {root}", "every parent of disk_dir must be a directory this user can write in"):
        root.mkdir(parents=True, exist_ok=True)
    with _step(
        f"fsync of the directory {root}",
        "the filesystem cannot make renames durable; put disk_dir on a local filesystem (ext4, xfs)",
    ):
        _fsync_dir(root)
    writable = (
        f"make {root} writable by the user running the node (uid {os.getuid()}) or pick another disk_dir"
    )
    with _step(f"writing in {root}", writable):
        (root / tmp).mkdir(exist_ok=True)
        for prefix in range(256):
            # Every fan-out directory exists before the first rename, so no entry needs a
            # fsync of objects/ itself later.
            (root / "objects" / f"{prefix:02x}").mkdir(parents=True, exist_ok=True)
        fd, probe = create_tmp(root, tmp)
        try:
            pwrite_all(fd, MAGIC, 0)
        except BaseException:
            discard_tmp(fd, probe)
            raise
    with _step(
        f"fsync of a file in {root}", "put disk_dir on a local filesystem that supports fsync (ext4, xfs)"
    ):
        try:
            os.fsync(fd)
        finally:
            discard_tmp(fd, probe)
        _fsync_dir(root / "objects")
        _fsync_dir(root)


def scan(root: Path, tmp: str = "tmp") -> Scan:
    """Empties tmp/ of the node's own files and returns every valid object, oldest first.

    Deletes only what the node names: tmp files of create_tmp's form, and object files at their
    key's path that fail their checks. Anything else is left in place and reported as foreign.
    """
    prepare(root, tmp)
    foreign: list[Path] = []
    mine: list[Path] = []
    for path in sorted((root / tmp).iterdir()):
        (mine if _OWN_NAME.fullmatch(path.name) and not path.is_dir() else foreign).append(path)
    unlink_quietly(mine)
    found: list[tuple[float, ObjectInfo]] = []
    for subdir in sorted((root / "objects").iterdir()):
        if not (_FANOUT_NAME.fullmatch(subdir.name) and subdir.is_dir()):
            foreign.append(subdir)
            continue
        for path in sorted(subdir.iterdir()):
            key = bytes.fromhex(path.name) if _OWN_NAME.fullmatch(path.name) else b""
            if not key or path != object_path(root, key) or path.is_dir():
                foreign.append(path)
                continue
            opened = open_for_read(root, key, verify=False)
            if opened.status is OpenStatus.OK and opened.info is not None:
                found.append((os.fstat(opened.fd).st_mtime, opened.info))
                os.close(opened.fd)
            else:
                unlink_quietly([path])
    found.sort(key=lambda item: item[0])
    return Scan(objects=[info for _, info in found], foreign=foreign)


def unlink_quietly(paths: list[Path]) -> None:
    """Deletes files that may already be gone; directories are skipped."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            os.unlink(path)
