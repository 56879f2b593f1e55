"""The inference task: one message is one batch of item ids of one model."""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, as_completed
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from ml import ImageError, crop_and_resize, load_rgb, make_thumbnail
from ml.batching import BatchInfo, Producer
from ml.registry import ModelSpec
from tasks.celery_app import app
from tasks.metrics import failure_kind, observe_batch
from tasks.policy import BatchTask
from tasks.reaper import worker_instance
from tasks.worker import decode_pool, runtime_for
from webapp.jobs.models import Item, Outcome, record_outcomes

log = logging.getLogger(__name__)


@dataclass
class Decoded:
    item: Item
    pixels: np.ndarray | None = None
    thumbnail: str = ""
    error: str = ""
    error_kind: str = ""
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
        return Decoded(item, error=str(error), error_kind=failure_kind(error), decode_ms=_ms_since(started))
    except FileNotFoundError:
        return Decoded(item, error="the stored file is missing", error_kind="missing_file", decode_ms=_ms_since(started))
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
    batcher = runtime_for(model_name).batcher
    # Announced before the claim, so crops of other tasks in this process
    # wait (at most the batching delay) for ours to share a forward pass.
    with batcher.producer(expected=len(item_ids)) as producer:
        items = Item.objects.claim(item_ids, max_attempts=settings.VQ_MAX_ATTEMPTS, worker=worker_instance())
        producer.withdraw(len(item_ids) - len(items))
        if not items:
            log.info("batch of %d items: nothing left to do (finished, cancelled or deleted)", len(item_ids))
            return
        claimed = time.perf_counter()
        outcomes, batches = classify_items(items, model_name, producer)
    classified = time.perf_counter()
    written = record_outcomes(outcomes)
    deleted = _deleted_items(outcomes) if written < len(outcomes) else set()
    observe_batch(
        model_name, runtime_for(model_name).classifier.device, outcomes, written=written, deleted=deleted,
        forwards=_describe_forwards(batches), held_max_ms=max((b.held_ms for b in batches), default=0.0),
        started=started, claimed=claimed, classified=classified,
    )  # fmt: skip


def _deleted_items(outcomes: list[Outcome]) -> set[int]:
    """Ids of the items whose rows are gone: their job was deleted while this batch ran."""
    ids = {outcome.item_id for outcome in outcomes}
    return ids - set(Item.objects.filter(pk__in=ids).values_list("pk", flat=True))


def classify_items(
    items: list[Item], model_name: str, producer: Producer | None = None
) -> tuple[list[Outcome], list[BatchInfo]]:
    """Every item's outcome, in order, and how its crops were batched.

    Decode threads read the images; each crop goes to this process's batcher
    the moment it is ready, so the model runs while the rest still decode,
    and crops of other tasks running in this process share its forward passes.
    """
    runtime = runtime_for(model_name)
    if producer is None:
        with runtime.batcher.producer(expected=len(items)) as own:
            return classify_items(items, model_name, own)
    spec = runtime.classifier.spec
    decoding = [decode_pool().submit(decode_item, item, spec) for item in items]
    predicted: dict[int, Future] = {}
    for done in as_completed(decoding):
        entry = done.result()
        if entry.pixels is None:
            producer.withdraw(1)
        else:
            predicted[entry.item.pk] = producer.submit(entry.pixels)
            entry.pixels = None  # the batcher holds the crop until its forward pass

    outcomes, batches = [], []
    for entry in (future.result() for future in decoding):
        if entry.item.pk not in predicted:
            outcomes.append(_outcome(entry))
            continue
        predictions, batch = predicted[entry.item.pk].result()
        batches.append(batch)
        outcomes.append(_outcome(entry, [p.as_dict() for p in predictions], batch.forward_ms))
    return outcomes, batches


def _outcome(entry: Decoded, predictions: list[dict] | None = None, inference_ms: float | None = None) -> Outcome:
    return Outcome(
        item_id=entry.item.pk,
        job_id=entry.item.job_id,
        predictions=predictions,
        error=entry.error,
        error_kind=entry.error_kind,
        thumbnail=entry.thumbnail,
        decode_ms=entry.decode_ms,
        inference_ms=inference_ms,
    )


def _describe_forwards(batches: list[BatchInfo]) -> str:
    """'1x3+2x1': forward passes this batch's crops went through, by size (counted per crop)."""
    sizes: dict[int, int] = {}
    for batch in batches:
        sizes[batch.size] = sizes.get(batch.size, 0) + 1
    return "+".join(f"{size}x{count}" for size, count in sorted(sizes.items())) or "none"
