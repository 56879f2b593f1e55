"""The files a job is made of: uploaded images, and the members of .zip archives.

An upload whose bytes start like a zip archive (never its name or content
type) is opened here and each member becomes a candidate image, named
`archive.zip/folder/photo.jpg`. An archive is refused as a whole when its
directory says it is too big: more members than VQ_MAX_ZIP_MEMBERS, more
uncompressed bytes than VQ_MAX_ZIP_BYTES (all archives of one request
together), or a member path that climbs out of the archive (absolute, `..`,
a drive letter). An archive with no file in it is refused by name too.
Single members are refused by name: nested archives, links, encrypted or
damaged members, members over the per-file limit, and members whose first
bytes are not an image's (refused before the rest is unpacked). Nothing is
extracted to a path taken from the archive: each member is copied to an
anonymous temporary file and checked like any upload.
"""

from __future__ import annotations

import lzma
import os
import shutil
import stat
import unicodedata
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from django.conf import settings
from django.core.files.uploadedfile import TemporaryUploadedFile, UploadedFile

from ml import NOT_AN_IMAGE, could_be_supported_image
from webapp.jobs.validation import UNNAMED_FILE, Rejection, display_name, human_size

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or an empty archive
# Archive formats we do not open inside an archive, recognised by their first bytes.
_ARCHIVE_MAGIC = {
    b"PK\x03\x04": "zip",
    b"PK\x05\x06": "zip",
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"7z\xbc\xaf\x27\x1c": "7z",
    b"Rar!\x1a\x07": "rar",
}
# Written by macOS and Windows next to the real files; never images.
_SYSTEM_JUNK = ("__MACOSX/",)
_SYSTEM_JUNK_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})


def is_zip_archive(upload: UploadedFile) -> bool:
    upload.seek(0)
    head = upload.read(4)
    upload.seek(0)
    return head in _ZIP_MAGIC


@dataclass(frozen=True)
class Candidate:
    """A file to check as one image, and the name its owner knows it by."""

    file: UploadedFile
    filename: str


def expand_uploads(uploads: Iterable[UploadedFile]) -> Iterator[Candidate | Rejection]:
    """Each upload as is, or each member of a zip archive, or a Rejection naming it.

    Members are yielded one at a time as temporary files that are deleted once
    the caller moves on, so a large archive never holds more than one member
    on disk or open at once.
    """
    unpack_budget = _UnpackBudget(settings.VQ_MAX_ZIP_BYTES)
    for upload in uploads:
        if upload.size and is_zip_archive(upload):
            yield from _archive_members(upload, unpack_budget)
        else:
            yield Candidate(upload, display_name(upload.name))


@dataclass
class _UnpackBudget:
    """Uncompressed bytes the archives of one request may still unpack to, together."""

    left: int


def _archive_members(upload: UploadedFile, budget: _UnpackBudget) -> Iterator[Candidate | Rejection]:
    archive_name = display_name(upload.name)
    upload.seek(0)
    try:
        refusal = _check_directory(upload)
        if refusal:
            yield Rejection(archive_name, refusal)
            return
        upload.seek(0)
        archive = zipfile.ZipFile(upload)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as error:
        yield Rejection(archive_name, f"not a readable zip archive: {error}")
        return
    except NotImplementedError as error:  # a zip format version newer than Python reads
        yield Rejection(archive_name, f"a zip archive we cannot open ({error}); use plain zip (deflate)")
        return
    with archive:
        members = archive.infolist()
        refusal = _check_members(members, budget)
        if refusal:
            yield Rejection(archive_name, refusal)
            return
        # A "folder" (a name ending in /) that holds bytes is checked as a file, not skipped.
        files = [
            member for member in members
            if not (member.is_dir() and member.file_size == 0) and not _is_system_junk(member.filename)
        ]  # fmt: skip
        if not files:
            what = "nothing but folders and system files" if members else "no files"
            yield Rejection(archive_name, f"the archive holds {what}; there is no image in it")
            return
        for member in files:
            name = member_display_name(archive_name, member.filename)
            problem = _member_problem(member)
            if problem:
                yield Rejection(name, problem)
                continue
            extracted = _extract(archive, member, name)
            if isinstance(extracted, Rejection):
                yield extracted
                continue
            try:
                yield Candidate(extracted, name)
            finally:
                extracted.close()  # deletes the temporary file


def _check_directory(upload: UploadedFile) -> str:
    """Refuse by the archive's end record alone, before its directory is parsed into memory."""
    # zipfile's own reader of the end-of-central-directory record (zip64 aware).
    end_record = zipfile._EndRecData(upload)  # noqa: SLF001 - stable for decades, no public twin
    if end_record is None:
        raise zipfile.BadZipFile("no end-of-archive record (the file is truncated or not a zip)")
    declared = end_record[zipfile._ECD_ENTRIES_TOTAL]  # noqa: SLF001
    if declared > settings.VQ_MAX_ZIP_MEMBERS:
        return _too_many_members(declared)
    return ""


def _check_members(members: list[zipfile.ZipInfo], budget: _UnpackBudget) -> str:
    if len(members) > settings.VQ_MAX_ZIP_MEMBERS:
        return _too_many_members(len(members))
    for member in members:
        if not is_safe_member_path(member.filename):
            return (
                f"unsafe path {member.filename!r} inside the archive (absolute paths and '..' are refused); "
                "nothing from this archive was used"
            )
    # The sizes in the directory bound what extraction can produce: zipfile
    # stops each member at its declared size and checks its CRC.
    total = sum(member.file_size for member in members)
    if total > settings.VQ_MAX_ZIP_BYTES:
        return (
            f"the archive unpacks to {human_size(total)}, over the limit of "
            f"{human_size(settings.VQ_MAX_ZIP_BYTES)} per upload; nothing from it was used"
        )
    if total > budget.left:
        # Many small bombs in one request add up like one big one.
        return (
            f"the archive unpacks to {human_size(total)}, and with the archives before it in this upload that is "
            f"over the limit of {human_size(settings.VQ_MAX_ZIP_BYTES)} per upload; nothing from it was used "
            "(send it as a job of its own)"
        )
    budget.left -= total
    return ""


def _too_many_members(count: int) -> str:
    return (
        f"the archive holds {count} entries, over the limit of {settings.VQ_MAX_ZIP_MEMBERS} per archive; "
        "nothing from it was used"
    )


def is_safe_member_path(path: str) -> bool:
    """False for a member path that would land outside a folder it was extracted into."""
    normalised = path.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        return False
    return ".." not in PurePosixPath(normalised).parts


def _is_system_junk(path: str) -> bool:
    return path.startswith(_SYSTEM_JUNK) or PurePosixPath(path).name in _SYSTEM_JUNK_NAMES


def _member_problem(member: zipfile.ZipInfo) -> str:
    if stat.S_ISLNK(member.external_attr >> 16):
        return "a symbolic link inside the archive; links are not followed"
    if member.flag_bits & 0x1:
        return "encrypted inside the archive; send it unencrypted"
    if member.file_size == 0:
        return "the file is empty (0 bytes)"
    if member.file_size > settings.VQ_MAX_FILE_BYTES:
        return (
            f"the file is {human_size(member.file_size)}, over the limit of "
            f"{human_size(settings.VQ_MAX_FILE_BYTES)} per file"
        )
    return ""


# What a damaged member's decompressor raises: zlib and lzma have errors of
# their own; bz2 raises OSError, zipfile BadZipFile (a CRC) or EOFError.
_DAMAGED_MEMBER_ERRORS = (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error, lzma.LZMAError)


def _extract(archive: zipfile.ZipFile, member: zipfile.ZipInfo, name: str) -> UploadedFile | Rejection:
    # The file object's own name is fixed: a member path may clean to nothing
    # ("." or control characters), which Django refuses as a file name. Its
    # owner knows it by `name`, carried beside it.
    temporary = TemporaryUploadedFile("member", "application/octet-stream", member.file_size, None)
    try:
        with archive.open(member) as source:
            head = source.read(16)
            kind = _archive_kind(head)
            if kind:
                temporary.close()
                return Rejection(name, f"a {kind} archive inside an archive; archives are opened one level deep only")
            if not could_be_supported_image(head):
                # Judged from its first bytes, as a whole read would be: the rest is never unpacked.
                temporary.close()
                return Rejection(name, NOT_AN_IMAGE)
            temporary.write(head)
            shutil.copyfileobj(source, temporary, length=1024 * 1024)
    except NotImplementedError:
        temporary.close()
        return Rejection(name, "compressed with a method we cannot unpack; use plain zip (deflate)")
    except _DAMAGED_MEMBER_ERRORS as error:
        temporary.close()
        reason = str(error) or ("its data ends before its declared size" if isinstance(error, EOFError) else type(error).__name__)
        return Rejection(name, f"damaged inside the archive: {reason}")
    except BaseException:
        temporary.close()
        raise
    temporary.size = temporary.tell()
    temporary.seek(0)
    return temporary


def _archive_kind(head: bytes) -> str:
    for magic, kind in _ARCHIVE_MAGIC.items():
        if head.startswith(magic):
            return kind
    return ""


def member_display_name(archive_name: str, member_path: str) -> str:
    """`archive.zip/folder/photo.jpg`, printable, at most 255 characters (the file name survives)."""
    clean = "".join(ch for ch in member_path.replace("\\", "/") if unicodedata.category(ch)[0] != "C").strip("/ ")
    name = f"{archive_name}/{clean or UNNAMED_FILE}"
    if len(name) <= 255:
        return name
    tail = os.path.basename(clean)[-200:]
    return f"{archive_name[:50]}/…/{tail}"
