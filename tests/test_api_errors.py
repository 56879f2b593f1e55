"""Errors under /api/ answer JSON whatever DEBUG says; pages keep their HTML error pages."""

import uuid

import pytest
from rest_framework.test import APIClient

from webapp.jobs.api import JobViewSet

pytestmark = pytest.mark.django_db

NOT_FOUND = {"detail": "Not found."}


@pytest.fixture(params=[False, True], ids=["DEBUG off", "DEBUG on"])
def debug(request, settings):
    settings.DEBUG = request.param
    return request.param


@pytest.mark.parametrize(
    "path",
    ["/api/nope/", "/api/jobs/not-a-uuid/", f"/api/jobs/{uuid.uuid4()}/no-such-action/", "/api/tokens/abc/", "/api/v2"],
)
def test_unknown_api_urls_answer_json_404(api_as, alice, debug, path):
    response = api_as(alice).get(path)
    # JSON, never Django's HTML page or its DEBUG page.
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == NOT_FOUND


def test_unknown_api_url_is_json_for_an_anonymous_caller_too(debug):
    response = APIClient().post("/api/nope/", {"a": 1})
    assert (response.status_code, response["Content-Type"], response.json()) == (404, "application/json", NOT_FOUND)


def test_a_crash_under_api_answers_json_500(api_as, alice, debug, monkeypatch, caplog):
    def crash(self, request, *args, **kwargs):
        raise RuntimeError("the database fell over")

    monkeypatch.setattr(JobViewSet, "list", crash)
    api = api_as(alice)
    api.raise_request_exception = False
    response = api.get("/api/jobs/")
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    # Nothing of the exception in the answer; all of it in the log.
    assert response.json() == {"detail": "Server error; it has been logged."}
    assert any(record.exc_info and "the database fell over" in str(record.exc_info[1]) for record in caplog.records)


def test_pages_keep_html_error_pages(client, alice, debug):
    client.force_login(alice)
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
