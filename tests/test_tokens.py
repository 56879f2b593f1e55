"""API tokens: stored hashed, shown once, expiring, revocable, last use recorded."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from webapp.security.models import ApiToken, hash_key

pytestmark = pytest.mark.django_db


def with_key(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def session_of(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def test_a_token_made_in_a_session_is_shown_once_and_stored_only_as_a_hash(alice):
    created = session_of(alice).post("/api/tokens/", {"name": "laptop"}, format="json")
    assert created.status_code == 201
    body = created.json()
    key = body["key"]
    assert set(body) == {"id", "name", "prefix", "created_at", "expires_at", "last_used_at", "key"}
    assert (body["name"], body["prefix"], body["expires_at"]) == ("laptop", key[:10], None)

    stored = ApiToken.objects.get(pk=body["id"])
    assert stored.key_hash == hash_key(key)
    assert not ApiToken.objects.filter(key_hash=key).exists()

    # The key works, and no later answer ever shows it again.
    listed = with_key(key).get("/api/tokens/")
    assert listed.status_code == 200
    assert [token["name"] for token in listed.json()] == ["laptop"]
    assert key not in listed.content.decode()
    assert "key" not in session_of(alice).get(f"/api/tokens/{body['id']}/").json()


def test_a_token_cannot_create_tokens(alice):
    key = ApiToken.objects.issue(alice, "script")[1]
    response = with_key(key).post("/api/tokens/", {"name": "successor"}, format="json")
    # A stolen token must not be able to make itself a successor.
    assert response.status_code == 403
    assert "session" in response.json()["detail"]
    assert ApiToken.objects.filter(user=alice).count() == 1


def test_expiry_must_be_in_the_future_and_an_expired_token_is_refused(alice):
    client = session_of(alice)
    past = (timezone.now() - timedelta(minutes=1)).isoformat()
    refused = client.post("/api/tokens/", {"name": "old", "expires_at": past}, format="json")
    assert refused.status_code == 400
    assert "future" in refused.json()["expires_at"][0]

    soon = timezone.now() + timedelta(days=1)
    body = client.post("/api/tokens/", {"name": "day", "expires_at": soon.isoformat()}, format="json").json()
    assert with_key(body["key"]).get("/api/jobs/").status_code == 200

    ApiToken.objects.filter(pk=body["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    expired = with_key(body["key"]).get("/api/jobs/")
    assert expired.status_code == 401
    assert "expired" in expired.json()["detail"]


def test_revoking_stops_the_token_at_once(alice):
    client = session_of(alice)
    body = client.post("/api/tokens/", {"name": "ci"}, format="json").json()
    token_client = with_key(body["key"])
    assert token_client.get("/api/jobs/").status_code == 200

    # A token may revoke itself (or any of its owner's tokens).
    assert token_client.delete(f"/api/tokens/{body['id']}/").status_code == 204
    assert token_client.get("/api/jobs/").status_code == 401
    assert not ApiToken.objects.filter(pk=body["id"]).exists()


def test_unknown_key_and_inactive_user_get_401(alice):
    assert with_key("vq_not-a-real-key").get("/api/jobs/").status_code == 401
    key = ApiToken.objects.issue(alice, "script")[1]
    alice.is_active = False
    alice.save(update_fields=["is_active"])
    assert with_key(key).get("/api/jobs/").status_code == 401


def test_last_use_is_recorded_at_most_once_a_minute(alice):
    token, key = ApiToken.objects.issue(alice, "script")
    assert token.last_used_at is None
    with_key(key).get("/api/jobs/")
    token.refresh_from_db()
    assert token.last_used_at is not None

    recent = timezone.now() - timedelta(seconds=30)
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=recent)
    with_key(key).get("/api/jobs/")
    token.refresh_from_db()
    # Used again within the minute: no write.
    assert token.last_used_at == recent

    stale = timezone.now() - timedelta(minutes=5)
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=stale)
    with_key(key).get("/api/jobs/")
    token.refresh_from_db()
    assert token.last_used_at > stale + timedelta(minutes=4)


def test_another_users_token_is_a_404_and_survives(alice, bob):
    bobs = ApiToken.objects.issue(bob, "bob-laptop")[0]
    client = session_of(alice)
    assert client.get(f"/api/tokens/{bobs.pk}/").status_code == 404
    assert client.delete(f"/api/tokens/{bobs.pk}/").status_code == 404
    assert client.get("/api/tokens/").json() == []
    assert ApiToken.objects.filter(pk=bobs.pk).exists()
