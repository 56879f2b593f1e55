"""The API tokens page: create (key shown once), list, revoke; limits shown."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from webapp.security.models import ApiToken, UploadRecord, hash_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def page(client, alice):
    client.force_login(alice)
    return client


def test_creating_a_token_redirects_then_shows_its_key_once_and_it_works(page, alice):
    response = page.post("/settings/tokens/", {"name": "laptop scripts", "expires_in_days": "30"})
    # Post/Redirect/Get: reloading the page that shows the key must not post again.
    assert (response.status_code, response["Location"]) == (302, "/settings/tokens/")
    token = ApiToken.objects.get(user=alice)
    assert token.name == "laptop scripts"
    assert timedelta(days=29, hours=23) < token.expires_at - timezone.now() <= timedelta(days=30)

    shown = page.get("/settings/tokens/")
    assert shown.status_code == 200
    assert "no-store" in shown["Cache-Control"]
    key = shown.context["new_key"]
    assert token.key_hash == hash_key(key) and token.prefix == key[:10]
    assert shown.content.decode().count(f'value="{key}"') == 1

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/jobs/").status_code == 200

    # Shown once: a reload names the token by its prefix, never the key, and makes no second token.
    reloaded = page.get("/settings/tokens/")
    listing = reloaded.content.decode()
    assert reloaded.context["new_key"] is None
    assert "laptop scripts" in listing and f"{key[:10]}…" in listing
    assert key not in listing
    assert ApiToken.objects.filter(user=alice).count() == 1
    # Nor is it left in the session.
    assert key not in str(dict(page.session))


def test_a_token_that_never_expires_and_a_nameless_one(page, alice):
    assert page.post("/settings/tokens/", {"name": "ci", "expires_in_days": ""}).status_code == 302
    assert ApiToken.objects.get(user=alice).expires_at is None
    refused = page.post("/settings/tokens/", {"name": "   ", "expires_in_days": ""})
    assert refused.status_code == 400
    assert "This field is required." in refused.content.decode()
    assert ApiToken.objects.filter(user=alice).count() == 1


def test_revoking_from_the_page(page, alice):
    token, key = ApiToken.objects.issue(alice, "old laptop")
    listing = page.get("/settings/tokens/").content.decode()
    # Revoke… asks first: the link shows what stops working, and changes nothing.
    assert f'href="/settings/tokens/{token.pk}/revoke"' in listing
    asked = page.get(f"/settings/tokens/{token.pk}/revoke").content.decode()
    assert "Revoke “old laptop”?" in asked and f"{key[:10]}…" in asked and key not in asked
    assert ApiToken.objects.filter(pk=token.pk).exists()
    response = page.post(f"/settings/tokens/{token.pk}/revoke", follow=True)
    assert response.redirect_chain[-1][0] == "/settings/tokens/"
    assert "Revoked “old laptop”" in response.content.decode()
    assert not ApiToken.objects.filter(pk=token.pk).exists()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/jobs/").status_code == 401


def test_only_my_tokens_are_listed_and_revocable(page, bob):
    bobs, _ = ApiToken.objects.issue(bob, "bob-laptop-token")
    assert "bob-laptop-token" not in page.get("/settings/tokens/").content.decode()
    assert page.get(f"/settings/tokens/{bobs.pk}/revoke").status_code == 404
    assert page.post(f"/settings/tokens/{bobs.pk}/revoke").status_code == 404
    assert ApiToken.objects.filter(pk=bobs.pk).exists()


def test_the_page_shows_my_limits_and_what_i_used(page, alice, settings):
    settings.VQ_UPLOADS_PER_HOUR, settings.VQ_IMAGES_PER_DAY = 10, 500
    UploadRecord.objects.create(user=alice, images=7)
    UploadRecord.objects.create(user=alice, images=5, created_at=timezone.now() - timedelta(hours=3))
    html = page.get("/settings/tokens/").content.decode()
    assert "Uploads in the last hour: <strong>1</strong> of 10" in html
    assert "Images in the last 24 hours: <strong>12</strong> of 500" in html
