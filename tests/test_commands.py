"""Management commands and the embedded broker."""

import io
import os

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from tasks.embedded_redis import EmbeddedRedis, broker_url, ping


@pytest.mark.django_db
def test_create_api_token_prints_only_the_token_and_creates_the_user():
    out = io.StringIO()
    call_command("create_api_token", "carol", stdout=out)
    token = out.getvalue().strip()
    user = get_user_model().objects.get(username="carol")
    assert Token.objects.get(user=user).key == token
    assert len(token) == 40 and token.isalnum()
    assert not user.has_usable_password()

    again = io.StringIO()
    call_command("create_api_token", "carol", stdout=again)
    # Idempotent: the same user, the same token.
    assert again.getvalue().strip() == token
    assert get_user_model().objects.filter(username="carol").count() == 1


def test_embedded_redis_is_a_real_server_and_stops():
    with EmbeddedRedis() as server:
        import redis

        client = redis.Redis.from_url(server.url)
        client.set("answer", 42)
        assert client.get("answer") == b"42"
        port = server.port
    assert not ping(port)


def test_broker_url_prefers_redis_url(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://example.invalid:6379/3")
    assert broker_url() == "redis://example.invalid:6379/3"
    assert os.environ["REDIS_URL"] == "redis://example.invalid:6379/3"
