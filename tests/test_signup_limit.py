"""Sign-ups per client address are limited, so new accounts cannot multiply the per-user quotas."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from webapp.jobs.retention import purge_expired_jobs
from webapp.security.models import SignupRecord

pytestmark = pytest.mark.django_db

HOME, ELSEWHERE = "192.0.2.10", "198.51.100.7"  # documentation addresses, only written into META


@pytest.fixture(autouse=True)
def two_a_day(settings):
    settings.VQ_SIGNUPS_PER_DAY = 2


def sign_up(username: str, address: str = HOME):
    form = {"username": username, "password1": "a-long-passphrase-9", "password2": "a-long-passphrase-9"}
    return Client().post("/accounts/signup/", form, REMOTE_ADDR=address)


def test_the_third_account_from_one_address_in_a_day_is_refused_with_429():
    assert sign_up("carol").status_code == 302
    assert sign_up("dave").status_code == 302
    refused = sign_up("erin")
    assert refused.status_code == 429
    assert "2 accounts were made from your address in the last 24 hours" in refused.content.decode()
    assert 0 < int(refused["Retry-After"]) <= 24 * 3600
    assert not get_user_model().objects.filter(username="erin").exists()
    # Another address is not affected.
    assert sign_up("erin", address=ELSEWHERE).status_code == 302


def test_sign_ups_older_than_a_day_no_longer_count_and_are_purged():
    SignupRecord.objects.create(address=HOME, created_at=timezone.now() - timedelta(hours=25))
    SignupRecord.objects.create(address=HOME, created_at=timezone.now() - timedelta(hours=2))
    assert sign_up("carol").status_code == 302
    assert sign_up("dave").status_code == 429
    purge_expired_jobs()
    assert SignupRecord.objects.filter(address=HOME).count() == 2


def test_zero_means_no_limit(settings):
    settings.VQ_SIGNUPS_PER_DAY = 0
    for name in ("carol", "dave", "erin"):
        assert sign_up(name).status_code == 302
