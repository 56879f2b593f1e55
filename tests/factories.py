"""Jobs with finished items, written through the same calls the workers use."""

from __future__ import annotations

from django.core.files.storage import default_storage

from tests.conftest import SAMPLES
from tests.images import upload
from webapp.jobs.models import Item, Job, Outcome, record_outcomes


def top5(label: str, score: float) -> list[dict]:
    """Five predictions best first, `label` on top."""
    rest = (1.0 - score) / 4
    return [{"label": label, "class_index": 1, "score": score}] + [
        {"label": f"{label} runner-up {n}", "class_index": 10 + n, "score": round(rest - n * 0.001, 6)}
        for n in range(4)
    ]


def make_job(owner, results: dict[str, str | tuple[str, float] | None], thumbnails: bool = True) -> Job:
    """A job with one item per filename.

    Each value says how the item ended: (label, score) succeeded, a string is
    a failure's error, None leaves the item queued.
    """
    job = Job.objects.create(owner=owner, model_name="efficientnet-lite0", total=len(results))
    image = (SAMPLES / "coffee.png").read_bytes()
    outcomes = []
    for filename, result in results.items():
        stored = default_storage.save(f"uploads/{job.pk}/{len(outcomes)}.png", upload("x.png", image))
        item = Item.objects.create(
            job=job, filename=filename, file=stored, sha256="0" * 64, format="PNG", width=400, height=400,
            size_bytes=len(image),
        )  # fmt: skip
        if isinstance(result, tuple):
            thumb = ""
            if thumbnails:
                thumb = default_storage.save(f"thumbs/{job.pk}/{item.pk}.jpg", upload("t.jpg", b"\xff\xd8thumb"))
            outcomes.append(
                Outcome(item.pk, job.pk, predictions=top5(*result), thumbnail=thumb, decode_ms=3.0, inference_ms=40.0)
            )
        elif isinstance(result, str):
            outcomes.append(Outcome(item.pk, job.pk, error=result))
    if outcomes:
        record_outcomes(outcomes)
    job.refresh_from_db()
    return job
