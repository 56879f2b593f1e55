"""Multipart parsing that keeps every file part, so none is dropped without a word.

Django's parser silently skips a file part whose name sanitises to nothing
(`..`, `.`, `photos/`): the file never reaches the view, so it can be neither
accepted nor rejected by name. Here such a part is kept as "(unnamed file)"
and checked like any other. (A part with an empty filename is still skipped:
that is how a browser sends a file input left empty.)

Installed first in FILE_UPLOAD_HANDLERS: Django asks each handler's
handle_raw_input before parsing, and this one parses with the rest.
"""

from __future__ import annotations

from django.core.files.uploadhandler import FileUploadHandler
from django.http.multipartparser import MultiPartParser

UNNAMED_FILE = "(unnamed file)"


class _KeepUnnamedFilesParser(MultiPartParser):
    def sanitize_file_name(self, file_name):
        return super().sanitize_file_name(file_name) or UNNAMED_FILE


class KeepUnnamedFilesHandler(FileUploadHandler):
    """Parses the whole body with _KeepUnnamedFilesParser and the handlers after this one."""

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        others = [handler for handler in self.request.upload_handlers if handler is not self]
        return _KeepUnnamedFilesParser(META, input_data, others, encoding).parse()

    def receive_data_chunk(self, raw_data, start):  # never reached: the parse above uses the others
        return raw_data

    def file_complete(self, file_size):
        return None
