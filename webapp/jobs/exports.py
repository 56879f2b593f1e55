"""A job's results as CSV and JSON downloads, streamed so a large job needs little memory.

Both list every item in upload order with its filename, status, top-5 labels
and scores (best first) and error.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

from webapp.jobs.models import Item, Job

TOP_K = 5
CSV_HEADER = [
    "filename",
    "status",
    *(f"{kind}_{rank}" for rank in range(1, TOP_K + 1) for kind in ("label", "score")),
    "error",
]
# A spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_CHUNK = 500


def download_name(job: Job, extension: str) -> str:
    return f"visionqueue-{job.pk}.{extension}"


def _items(job: Job) -> Iterator[Item]:
    fields = ("pk", "filename", "status", "predictions", "error")
    return job.items.order_by("pk").only(*fields).iterator(chunk_size=_CHUNK)


def csv_row(item: Item) -> list[str]:
    predictions = (item.predictions or [])[:TOP_K]
    cells = [_spreadsheet_safe(item.filename), item.status]
    for rank in range(TOP_K):
        if rank < len(predictions):
            cells += [predictions[rank]["label"], f"{predictions[rank]['score']:.6f}"]
        else:
            cells += ["", ""]
    return cells + [_spreadsheet_safe(item.error)]


def _spreadsheet_safe(text: str) -> str:
    # A filename like "=HYPERLINK(...)" must stay text when the CSV is opened.
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


def csv_lines(job: Job) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(CSV_HEADER)
    yield flush()
    for item in _items(job):
        writer.writerow(csv_row(item))
        yield flush()


def item_record(item: Item) -> dict:
    return {
        "filename": item.filename,
        "status": item.status,
        "predictions": (item.predictions or [])[:TOP_K],
        "error": item.error or None,
    }


def job_record(job: Job) -> dict:
    return {
        "id": str(job.pk),
        "status": job.status,
        "model": job.model_name,
        "total": job.total,
        "succeeded": job.succeeded_count,
        "failed": job.failed_count,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def json_chunks(job: Job) -> Iterator[str]:
    """{"job": {...}, "items": [...]}, written item by item."""
    yield '{"job": ' + json.dumps(job_record(job)) + ', "items": ['
    for index, item in enumerate(_items(job)):
        yield ("," if index else "") + "\n" + json.dumps(item_record(item))
    yield "\n]}\n"
