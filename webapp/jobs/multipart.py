"""Multipart parsing that drops no file unseen and notices a body cut short.

Django's parser silently skips a file part whose name sanitises to nothing
(`..`, `.`, `photos/`): the file never reaches the view, so it can be neither
accepted nor rejected by name. Here such a part is kept, named after what is
left of its path (`photos/` is `photos`) or numbered ("(unnamed file 2)"),
and checked like any other. (A part with an empty filename is a text field
to Django; webapp.jobs.upload_form reports it unless it is empty, which is
how a browser sends a file input left empty.)

Django also takes a body that stops early (the client hung up, or the last
boundary never came) for a complete form, and quietly leaves out the part it
was reading. Here that is a MultiPartParserError, a 400 naming what was
missing, so a job is never created from part of an upload.

Installed first in FILE_UPLOAD_HANDLERS: Django asks each handler's
handle_raw_input before parsing, and this one parses with the rest.
"""

from __future__ import annotations

from django.core.files.uploadhandler import FileUploadHandler
from django.http.multipartparser import MultiPartParser, MultiPartParserError

from webapp.jobs.validation import unnamed_file


class _KeepUnnamedFilesParser(MultiPartParser):
    unnamed = 0

    def sanitize_file_name(self, file_name):
        sanitized = super().sanitize_file_name(file_name) or super().sanitize_file_name(file_name.rstrip("/\\"))
        if sanitized:
            return sanitized
        self.unnamed += 1
        return unnamed_file(self.unnamed)


class _CountingStream:
    """The request body as the parser reads it: how much came, and whether the closing boundary did."""

    def __init__(self, stream, boundary: bytes):
        self.stream, self.received = stream, 0
        self.closing = b"--" + boundary + b"--"
        self.closed = False
        self._carry = b""  # the end of the last read, in case the closing boundary straddles two

    def read(self, size=-1):
        data = self.stream.read(size)
        self.received += len(data)
        if not self.closed and data:
            window = self._carry + data
            self.closed = self.closing in window
            self._carry = window[-(len(self.closing) - 1) :]
        return data


class KeepUnnamedFilesHandler(FileUploadHandler):
    """Parses the whole body with _KeepUnnamedFilesParser and the handlers after this one."""

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        others = [handler for handler in self.request.upload_handlers if handler is not self]
        body = _CountingStream(input_data, boundary)
        fields, files = _KeepUnnamedFilesParser(META, body, others, encoding).parse()
        # The parser reads the body to its end (Django exhausts it), so this is all there was.
        if body.received < content_length:
            problem = (
                f"the body ended after {body.received} of the {content_length} bytes its Content-Length "
                "announced (was the connection cut?)"
            )
        elif body.received and not body.closed:
            problem = (
                f"the body does not end with its closing boundary ({body.closing.decode()}): "
                "it was cut short, or its parts are separated by another boundary than its Content-Type names"
            )
        else:
            return fields, files
        for upload in (upload for _, uploads in files.lists() for upload in uploads):
            upload.close()  # a temporary file is deleted on close
        raise MultiPartParserError(problem)

    def receive_data_chunk(self, raw_data, start):  # never reached: the parse above uses the others
        return raw_data

    def file_complete(self, file_size):
        return None
