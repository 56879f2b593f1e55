"""A job deleted by one request while another cancels or retries it: the loser answers 404, never 500.

Each race is played deterministically: the deletion happens at a seam inside
the cancel or retry, after that request has looked the job up.
"""

import pytest

from tests.factories import make_job
from webapp.jobs import services, views
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def open_job(alice):
    return make_job(alice, {"a.png": ("espresso", 0.9), "b.png": None})


@pytest.fixture
def done_job_with_a_failure(alice):
    return make_job(alice, {"a.png": ("espresso", 0.9), "bad.jpg": "cannot decode image data"})


def delete_first(monkeypatch, target, name):
    """Make target.name delete the job (as another request would) before it runs."""
    original = getattr(target, name)

    def deleted_then_original(job, *args, **kwargs):
        Job.objects.filter(pk=job.pk).delete()
        return original(job, *args, **kwargs)

    monkeypatch.setattr(target, name, deleted_then_original)


def delete_before_reload(monkeypatch):
    """The job goes after the action's own UPDATE, just before it reads the job back."""
    original = Job.refresh_from_db

    def deleted_then_reload(job, *args, **kwargs):
        Job.objects.filter(pk=job.pk).delete()
        return original(job, *args, **kwargs)

    monkeypatch.setattr(Job, "refresh_from_db", deleted_then_reload)


@pytest.mark.parametrize("seam", ["before the cancel", "before the reload"])
def test_api_cancel_of_a_job_deleted_meanwhile_is_404(api_as, alice, open_job, monkeypatch, seam):
    if seam == "before the cancel":
        delete_first(monkeypatch, services, "cancel")
    else:
        delete_before_reload(monkeypatch)
    response = api_as(alice).post(f"/api/jobs/{open_job.pk}/cancel/")
    # The loser of the race hears what it would have heard a moment later: no such job.
    assert (response.status_code, response.json()) == (404, {"detail": "Not found."})
    assert not Job.objects.filter(pk=open_job.pk).exists()


def test_api_cancel_of_a_finished_job_deleted_meanwhile_is_404(api_as, alice, done_job_with_a_failure, monkeypatch):
    # The 409 branch reads the job back to name its status: it is gone by then.
    delete_first(monkeypatch, services, "cancel")
    response = api_as(alice).post(f"/api/jobs/{done_job_with_a_failure.pk}/cancel/")
    assert response.status_code == 404


@pytest.mark.parametrize("seam", ["before the retry", "before the reload"])
def test_api_retry_of_a_job_deleted_meanwhile_is_404(api_as, alice, done_job_with_a_failure, monkeypatch, seam):
    if seam == "before the retry":
        delete_first(monkeypatch, services, "retry_failed")
    else:
        delete_before_reload(monkeypatch)
    response = api_as(alice).post(f"/api/jobs/{done_job_with_a_failure.pk}/retry-failed/")
    assert (response.status_code, response.json()) == (404, {"detail": "Not found."})


@pytest.mark.parametrize("seam", ["before the action", "before the reload"])
@pytest.mark.parametrize("button", ["cancel", "retry-failed"])
def test_page_buttons_on_a_job_deleted_meanwhile_are_404(
    client, alice, open_job, done_job_with_a_failure, monkeypatch, seam, button
):
    job, action = {"cancel": (open_job, "cancel"), "retry-failed": (done_job_with_a_failure, "retry_failed")}[button]
    if seam == "before the action":
        # The pages import the actions by name.
        delete_first(monkeypatch, views, action)
    else:
        delete_before_reload(monkeypatch)
    client.force_login(alice)
    assert client.post(f"/jobs/{job.pk}/{button}").status_code == 404
