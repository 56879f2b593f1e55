"""The inference task: one message is one batch of item ids of one model."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from ml import ImageError, crop_and_resize, load_rgb, make_thumbnail
from ml.registry import ModelSpec
from tasks.celery_app import app
from tasks.policy import BatchTask
from tasks.worker import classifier_for
from webapp.jobs.models import Item, Outcome, record_outcomes

log = logging.getLogger(__name__)

# Pillow releases the GIL while decoding, so a few threads decode in parallel.
_decoders = ThreadPoolExecutor(max_workers=2, thread_name_prefix="decode")


@dataclass
class Decoded:
    item: Item
    pixels: np.ndarray | None = None
    thumbnail: str = ""
    error: str = ""
    decode_ms: float = 0.0


def decode_item(item: Item, spec: ModelSpec) -> Decoded:
    """Read one stored image: the model's crop and a gallery thumbnail, or an error."""
    started = time.perf_counter()
    try:
        with default_storage.open(item.file.name, "rb") as stored:
            image = load_rgb(stored, max_pixels=settings.VQ_MAX_PIXELS, min_size=(spec.resize_size, spec.resize_size))
        pixels = crop_and_resize(image, spec)
        thumbnail = _save_thumbnail(item, make_thumbnail(image, settings.VQ_THUMBNAIL_SIZE))
    except ImageError as error:
        return Decoded(item, error=str(error), decode_ms=_ms_since(started))
    except FileNotFoundError:
        return Decoded(item, error="the stored file is missing", decode_ms=_ms_since(started))
    return Decoded(item, pixels=pixels, thumbnail=thumbnail, decode_ms=_ms_since(started))


def _save_thumbnail(item: Item, jpeg: bytes) -> str:
    # A fixed name per item, so a second delivery overwrites instead of adding.
    name = f"thumbs/{item.job_id}/{item.pk}.jpg"
    default_storage.delete(name)
    return default_storage.save(name, ContentFile(jpeg))


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


# Failure policy (retries, time limits, lost workers) lives in tasks.policy.BatchTask.
@app.task(name="vq.classify_batch", base=BatchTask, acks_late=True, reject_on_worker_lost=True)
def classify_batch(item_ids: list[int], model_name: str) -> None:
    """Decode, classify and store a batch. A bad image fails only itself."""
    started = time.perf_counter()
    items = Item.objects.claim(item_ids, max_attempts=settings.VQ_MAX_ATTEMPTS)
    if not items:
        log.info("batch of %d items: nothing left to do (finished, cancelled or deleted)", len(item_ids))
        return
    classifier = classifier_for(model_name)
    decoded = list(_decoders.map(lambda item: decode_item(item, classifier.spec), items))
    readable = [entry for entry in decoded if entry.pixels is not None]

    forward_started = time.perf_counter()
    predictions = classifier.predict([entry.pixels for entry in readable]) if readable else []
    inference_ms = _ms_since(forward_started)

    by_item = {entry.item.pk: preds for entry, preds in zip(readable, predictions)}
    outcomes = [
        Outcome(
            item_id=entry.item.pk,
            job_id=entry.item.job_id,
            predictions=[p.as_dict() for p in by_item[entry.item.pk]] if entry.pixels is not None else None,
            error=entry.error,
            thumbnail=entry.thumbnail,
            decode_ms=entry.decode_ms,
            inference_ms=inference_ms if entry.pixels is not None else None,
        )
        for entry in decoded
    ]
    written = record_outcomes(outcomes)
    log.info(
        "batch done: model=%s items=%d ok=%d failed=%d written=%d forward=%.0fms total=%.0fms",
        model_name, len(items), len(readable), len(items) - len(readable), written,
        inference_ms, (time.perf_counter() - started) * 1000,
    )  # fmt: skip
