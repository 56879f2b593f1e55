"""CSRF: every state change by a logged-in browser needs the form's token; token-authenticated API calls do not."""

import pytest
from django.test import Client

from webapp.jobs.models import Job
from webapp.security.models import ApiToken

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(alice) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    return client


def test_page_posts_without_the_csrf_token_are_refused(browser, alice):
    job = Job.objects.create(owner=alice, model_name="efficientnet-lite0", total=0)
    token, _ = ApiToken.objects.issue(alice, "laptop")
    for url in (f"/jobs/{job.pk}/delete", f"/jobs/{job.pk}/cancel", f"/settings/tokens/{token.pk}/revoke",
                "/settings/tokens/", "/upload/"):  # fmt: skip
        assert browser.post(url).status_code == 403, url
    assert Job.objects.filter(pk=job.pk).exists() and ApiToken.objects.filter(pk=token.pk).exists()


def test_the_api_in_a_browser_session_needs_the_csrf_token_too(browser, alice):
    job = Job.objects.create(owner=alice, model_name="efficientnet-lite0", total=0)
    assert browser.post("/api/tokens/", {"name": "x"}, content_type="application/json").status_code == 403
    assert browser.delete(f"/api/jobs/{job.pk}/").status_code == 403
    assert Job.objects.filter(pk=job.pk).exists()


def test_token_calls_carry_no_cookie_and_need_no_csrf_token(alice):
    job = Job.objects.create(owner=alice, model_name="efficientnet-lite0", total=0)
    key = ApiToken.objects.issue(alice, "script")[1]
    client = Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Token {key}")
    assert client.delete(f"/api/jobs/{job.pk}/").status_code == 204
