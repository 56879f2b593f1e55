"""Per-user upload rate limit and daily image quota, counted in the database.

Counting UploadRecord rows (not a per-process cache) makes the limits hold
across every gunicorn worker process and machine. The check and the record
happen in the job's own transaction, with the user's row locked, so two
uploads racing each other cannot both slip under the limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.translation import ngettext

from webapp.security.models import SignupRecord, UploadLimits, UploadRecord

RATE_WINDOW = timedelta(hours=1)
QUOTA_WINDOW = timedelta(hours=24)
SIGNUP_WINDOW = timedelta(hours=24)


class LimitExceeded(Exception):
    """Over a limit: answer 429 and say when to come back (retry_after, seconds)."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class UploadLimitExceeded(LimitExceeded):
    """Over the upload rate limit or the daily image quota."""


class SignupLimitExceeded(LimitExceeded):
    """Too many accounts made from one address."""


class UploadTooLargeForQuota(Exception):
    """More images in one upload than the whole daily quota: waiting will not help."""


@dataclass(frozen=True)
class Limits:
    uploads_per_hour: int  # 0: no limit
    images_per_day: int  # 0: no limit


def limits_for(user) -> Limits:
    """The site defaults, with this user's overrides from the admin."""
    override = UploadLimits.objects.filter(user=user).first()
    per_hour = settings.VQ_UPLOADS_PER_HOUR
    per_day = settings.VQ_IMAGES_PER_DAY
    if override is not None:
        per_hour = per_hour if override.uploads_per_hour is None else override.uploads_per_hour
        per_day = per_day if override.images_per_day is None else override.images_per_day
    return Limits(uploads_per_hour=per_hour, images_per_day=per_day)


@dataclass(frozen=True)
class Usage:
    uploads_last_hour: int
    images_last_day: int


def usage_of(user, now: datetime | None = None) -> Usage:
    """What counts against the user's limits right now."""
    now = now or timezone.now()
    records = UploadRecord.objects.filter(user=user, created_at__gt=now - QUOTA_WINDOW)
    return Usage(
        uploads_last_hour=records.filter(created_at__gt=now - RATE_WINDOW).count(),
        images_last_day=sum(records.values_list("images", flat=True)),
    )


def check_upload_allowed(user, images: int, now: datetime | None = None) -> None:
    """Raise if `user` may not upload `images` more images now; records nothing."""
    now = now or timezone.now()
    limits = limits_for(user)
    if limits.images_per_day and images > limits.images_per_day:
        raise UploadTooLargeForQuota(
            f"{images} images in one upload is more than your quota of "
            + ngettext("%d image", "%d images", limits.images_per_day) % limits.images_per_day
            + " per 24 hours; send fewer at a time"
        )
    if limits.uploads_per_hour:
        recent = list(
            UploadRecord.objects.filter(user=user, created_at__gt=now - RATE_WINDOW)
            .order_by("created_at")
            .values_list("created_at", flat=True)
        )
        if len(recent) >= limits.uploads_per_hour:
            # The upload that has to age out of the window before one more fits.
            frees_a_slot = recent[len(recent) - limits.uploads_per_hour]
            raise UploadLimitExceeded(
                "upload rate limit reached: "
                + ngettext("%d upload", "%d uploads", limits.uploads_per_hour) % limits.uploads_per_hour
                + " per hour",
                _seconds_until(frees_a_slot + RATE_WINDOW, now),
            )
    if limits.images_per_day:
        recent = list(
            UploadRecord.objects.filter(user=user, created_at__gt=now - QUOTA_WINDOW)
            .order_by("created_at")
            .values_list("created_at", "images")
        )
        used = sum(count for _, count in recent)
        if used + images > limits.images_per_day:
            to_free = used + images - limits.images_per_day
            freed = 0
            for created_at, count in recent:
                freed += count
                if freed >= to_free:
                    break
            raise UploadLimitExceeded(
                f"daily image quota reached: {used} of "
                + ngettext("%d image", "%d images", limits.images_per_day) % limits.images_per_day
                + f" used in the last 24 hours, and this upload has {images}",
                _seconds_until(created_at + QUOTA_WINDOW, now),
            )


def record_upload(user, images: int) -> None:
    """Check the limits and count this upload, atomically per user.

    Call inside the transaction that creates the job: if the job does not
    commit, neither does its record.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("record_upload must run inside the job's transaction")
    # Serialises this user's uploads on PostgreSQL; SQLite already holds the
    # database write lock for the whole (IMMEDIATE) transaction.
    get_user_model().objects.select_for_update().filter(pk=user.pk).first()
    now = timezone.now()
    check_upload_allowed(user, images, now)
    UploadRecord.objects.create(user=user, images=images, created_at=now)


def check_signup_allowed(address: str | None, now: datetime | None = None) -> None:
    """Raise if this client address has made VQ_SIGNUPS_PER_DAY accounts in the last 24 hours."""
    limit = settings.VQ_SIGNUPS_PER_DAY
    if not limit:
        return
    now = now or timezone.now()
    recent = list(
        SignupRecord.objects.filter(address=address, created_at__gt=now - SIGNUP_WINDOW)
        .order_by("created_at")
        .values_list("created_at", flat=True)
    )
    if len(recent) >= limit:
        raise SignupLimitExceeded(
            f"{limit} accounts were made from your address in the last 24 hours, the most allowed",
            _seconds_until(recent[len(recent) - limit] + SIGNUP_WINDOW, now),
        )


def record_signup(address: str | None) -> None:
    SignupRecord.objects.create(address=address)


def purge_old_records(now: datetime | None = None) -> int:
    """Forget uploads and sign-ups older than their windows; returns how many rows went."""
    now = now or timezone.now()
    deleted, _ = UploadRecord.objects.filter(created_at__lt=now - max(RATE_WINDOW, QUOTA_WINDOW)).delete()
    signups, _ = SignupRecord.objects.filter(created_at__lt=now - SIGNUP_WINDOW).delete()
    return deleted + signups


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, math.ceil((moment - now).total_seconds()))
