"""An upload form read one way, by the API and by the upload page alike.

Images come in the file field `images`, the model in the text field `model`.
Nothing else is dropped unseen: a file in another field, or a part in the
`images` field without a file name (which arrives as text: `filename=""`,
or curl's `-F images=<photo.jpg` for `@photo.jpg`), is rejected by name
beside the job; a form that cannot be one job is refused whole.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.files.uploadedfile import UploadedFile
from django.http import QueryDict
from django.utils.datastructures import MultiValueDict

from webapp.jobs.validation import Rejection, display_name

IMAGES_FIELD = "images"
MODEL_FIELD = "model"


@dataclass(frozen=True)
class UploadForm:
    uploads: list[UploadedFile]
    model_name: str | None  # None: not sent
    refused: list[Rejection]  # sent where no image is read; reported with the job's other rejections


class FormRefused(ValueError):
    """The form as a whole cannot become a job; `rejected` names the files it carried."""

    def __init__(self, message: str, rejected: list[Rejection]):
        super().__init__(message)
        self.rejected = rejected


def read_upload_form(fields: QueryDict, files: MultiValueDict) -> UploadForm:
    uploads = files.getlist(IMAGES_FIELD)
    refused = [
        Rejection(display_name(upload.name), f"sent in the field {field!r}; images go in the field 'images'")
        for field, field_uploads in files.lists()
        if field != IMAGES_FIELD
        for upload in field_uploads
    ]
    # A part without a file name arrives as text: a file sent with filename="",
    # or curl's <photo.jpg. Empty, it is a browser's file input left empty.
    refused += [
        Rejection(
            "(a part with no file name)",
            "sent in the field 'images' without a file name, so it arrived as text, not as a file; "
            'give the part a filename="..." (with curl: -F images=@photo.jpg, not <photo.jpg)',
        )
        for value in fields.getlist(IMAGES_FIELD)
        if value
    ]
    models = fields.getlist(MODEL_FIELD)
    if len(models) > 1:
        raise FormRefused(f"the field 'model' was sent {len(models)} times; send it once", refused)
    if not uploads and refused:
        raise FormRefused("no files in the field 'images'; images go in the field 'images'", refused)
    return UploadForm(uploads=uploads, model_name=models[0] if models else None, refused=refused)
