"""API tokens, per-user upload limits and the upload ledger the limits count.

A token's key is shown once, when it is made; only its SHA-256 is stored, so
a copy of the database does not hand out working keys.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

KEY_PREFIX = "vq_"
# How stale last_used_at may get before a request writes it again: one write
# a minute per token instead of one per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_key(key: str) -> str:
    # The key carries 256 random bits, so a plain SHA-256 (no salt, no
    # stretching) cannot be brute-forced, and it is one indexed lookup.
    return hashlib.sha256(key.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet):
    def active(self, now: datetime | None = None):
        return self.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now or timezone.now()))

    def issue(self, user, name: str, expires_at: datetime | None = None) -> tuple[ApiToken, str]:
        """Create a token; returns it and its key, which is never available again."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        token = self.create(user=user, name=name, key_hash=hash_key(key), prefix=key[:10], expires_at=expires_at)
        return token, key

    def for_key(self, key: str) -> ApiToken | None:
        """The token whose key this is, expired or not; None if there is none."""
        return self.select_related("user").filter(key_hash=hash_key(key)).first()


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What it is for, e.g. 'laptop scripts'.")
    # The first characters of the key, so an owner can tell their tokens apart
    # and match a leaked key to its row; far too short to authenticate with.
    prefix = models.CharField(max_length=10)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())

    def touch(self, now: datetime | None = None) -> None:
        """Record a use, at most one write per LAST_USED_RESOLUTION."""
        now = now or timezone.now()
        if self.last_used_at is None or now - self.last_used_at >= LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=self.pk).filter(
                Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_RESOLUTION)
            ).update(last_used_at=now)
            self.last_used_at = now


class UploadLimits(models.Model):
    """One user's exceptions to the site-wide upload limits (settings VQ_UPLOADS_PER_HOUR, VQ_IMAGES_PER_DAY)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="upload_limits")
    uploads_per_hour = models.PositiveIntegerField(
        null=True, blank=True, help_text="Jobs this user may create per hour. Empty: the site default; 0: no limit."
    )
    images_per_day = models.PositiveIntegerField(
        null=True, blank=True, help_text="Images this user may upload per 24 hours. Empty: the site default; 0: no limit."
    )

    class Meta:
        verbose_name = verbose_name_plural = "upload limits"

    def __str__(self) -> str:
        return f"upload limits of {self.user}"


class UploadRecord(models.Model):
    """One accepted upload: what the rate limit and the daily quota count.

    Kept apart from Job so that deleting a job does not give its images back
    to the quota; rows older than the longest window are purged.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    images = models.PositiveIntegerField()

    class Meta:
        indexes = [models.Index(fields=["user", "created_at"], name="upload_record_user_time")]

    def __str__(self) -> str:
        return f"{self.images} images by user {self.user_id} at {self.created_at:%Y-%m-%d %H:%M}"


class SignupRecord(models.Model):
    """One account created, by client address: what the sign-up limit counts.

    Without it, anyone could multiply the per-user quotas by making accounts.
    """

    address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["address", "created_at"], name="signup_record_address_time")]

    def __str__(self) -> str:
        return f"sign-up from {self.address} at {self.created_at:%Y-%m-%d %H:%M}"
