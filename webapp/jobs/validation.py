"""Check each uploaded file from its bytes before anything is stored.

A file is accepted only if it is non-empty, within the size limit, and its
header says it is a supported raster image within the pixel limit. Nothing is
decoded here; the worker does that, and a file that is broken further in fails
as its own item.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from dataclasses import dataclass

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.template.defaultfilters import filesizeformat

from ml import ImageError, ImageInfo, inspect_image

_EXTENSIONS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif"}


@dataclass(frozen=True)
class Rejection:
    filename: str
    error: str

    def as_dict(self) -> dict:
        return {"filename": self.filename, "error": self.error}


@dataclass(frozen=True)
class AcceptedUpload:
    upload: UploadedFile
    filename: str
    info: ImageInfo
    sha256: str

    @property
    def extension(self) -> str:
        return _EXTENSIONS.get(self.info.format, "")


def human_size(size: int) -> str:
    """Like Django's filesizeformat, with a plain space (it reads the same in JSON)."""
    return filesizeformat(size).replace("\xa0", " ")


# How a file with no usable name of its own is shown (a part named '..', a member named '.').
UNNAMED_FILE = "(unnamed file)"


def unnamed_file(number: int) -> str:
    """The placeholder numbered, so that several unnamed files of one upload can be told apart."""
    return f"(unnamed file {number})"


def display_name(raw_name: str | None) -> str:
    """The client's file name, fit to show: no folders, no control characters."""
    name = os.path.basename((raw_name or "").replace("\\", "/"))
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    return name[:255] or UNNAMED_FILE


def check_upload(upload: UploadedFile, filename: str | None = None) -> AcceptedUpload | Rejection:
    """Accept or reject one file; filename is how to name it to its owner (default: its upload name)."""
    filename = filename or display_name(upload.name)
    if not upload.size:
        return Rejection(filename, "the file is empty (0 bytes)")
    if upload.size > settings.VQ_MAX_FILE_BYTES:
        return Rejection(
            filename,
            f"the file is {human_size(upload.size)}, over the limit of "
            f"{human_size(settings.VQ_MAX_FILE_BYTES)} per file",
        )
    try:
        upload.seek(0)
        info = inspect_image(upload, max_pixels=settings.VQ_MAX_PIXELS)
    except ImageError as error:
        return Rejection(filename, str(error))
    return AcceptedUpload(upload=upload, filename=filename, info=info, sha256=_sha256(upload))


def _sha256(upload: UploadedFile) -> str:
    digest = hashlib.sha256()
    upload.seek(0)
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    return digest.hexdigest()
