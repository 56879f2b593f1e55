"""The Django admin: staff see every user's jobs, filter and search them, and act through named actions."""

import re

import pytest

from tests.factories import make_job
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_superuser("root", password="root-secret-pw")


@pytest.fixture
def jobs(alice, bob):
    return {
        "alice_done": make_job(alice, {"coffee.png": ("espresso", 0.95), "broken.jpg": "cannot decode image data"}),
        "alice_open": make_job(alice, {"queued.png": None}),
        "bob_done": make_job(bob, {"kitten.jpg": ("tabby cat", 0.7)}),
    }


def listed_job_ids(html: str) -> set[str]:
    return set(re.findall(r'/admin/jobs/job/([0-9a-f-]{36})/change/', html))


def test_staff_filter_jobs_by_status_owner_and_search_by_filename_or_label(client, staff, alice, jobs):
    client.force_login(staff)
    everything = client.get("/admin/jobs/job/").content.decode()
    assert listed_job_ids(everything) == {str(job.pk) for job in jobs.values()}

    done = client.get("/admin/jobs/job/?status__exact=done").content.decode()
    assert listed_job_ids(done) == {str(jobs["alice_done"].pk), str(jobs["bob_done"].pk)}
    alices = client.get(f"/admin/jobs/job/?owner__id__exact={alice.pk}").content.decode()
    assert listed_job_ids(alices) == {str(jobs["alice_done"].pk), str(jobs["alice_open"].pk)}
    by_label = client.get("/admin/jobs/job/?q=tabby").content.decode()
    assert listed_job_ids(by_label) == {str(jobs["bob_done"].pk)}
    by_filename = client.get("/admin/jobs/job/?q=broken.jpg").content.decode()
    assert listed_job_ids(by_filename) == {str(jobs["alice_done"].pk)}

    items = client.get("/admin/jobs/item/?q=espresso").content.decode()
    assert "coffee.png" in items and "kitten.jpg" not in items
    # Items by the short job id the job page shows, and by the whole id.
    for job_id in (str(jobs["bob_done"].pk)[:8], str(jobs["bob_done"].pk)):
        items = client.get(f"/admin/jobs/item/?q={job_id}").content.decode()
        assert "kitten.jpg" in items and "coffee.png" not in items, job_id


def test_predictions_are_shown_read_only(client, staff, jobs):
    item = jobs["alice_done"].items.get(filename="coffee.png")
    client.force_login(staff)
    page = client.get(f"/admin/jobs/item/{item.pk}/change/").content.decode()
    assert "<td>espresso</td>" in page and "0.9500" in page
    # No form field can change an item: no save button, no predictions textarea.
    assert 'name="_save"' not in page and 'name="predictions"' not in page
    # Staff see any owner's thumbnail and original through the admin's own views.
    thumbnail = client.get(f"/admin/jobs/item/{item.pk}/thumbnail/")
    assert thumbnail.status_code == 200 and b"".join(thumbnail.streaming_content).startswith(b"\xff\xd8")
    original = client.get(f"/admin/jobs/item/{item.pk}/image/")
    assert original.status_code == 200 and b"".join(original.streaming_content).startswith(b"\x89PNG")
    assert f'href="/admin/jobs/item/{item.pk}/image/"' in page


def test_non_staff_cannot_use_the_admin_or_its_image_view(client, alice, jobs):
    item = jobs["alice_done"].items.get(filename="coffee.png")
    client.force_login(alice)
    for url in ("/admin/jobs/job/", f"/admin/jobs/item/{item.pk}/thumbnail/", f"/admin/jobs/item/{item.pk}/image/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), url


def test_admin_actions_cancel_open_jobs_and_retry_failed_items(client, staff, jobs, django_capture_on_commit_callbacks):
    client.force_login(staff)
    selected = [str(jobs["alice_open"].pk), str(jobs["alice_done"].pk)]
    response = client.post("/admin/jobs/job/", {"action": "cancel_jobs", "_selected_action": selected}, follow=True)
    # Counted in words that agree with the numbers, and the same words as the API and the job page.
    assert (
        "1 job cancelled: their queued images will not run; those already running may still finish. "
        "1 had already finished and was left as it was."
    ) in response.content.decode()
    assert Job.objects.get(pk=jobs["alice_open"].pk).status == "cancelled"
    assert Job.objects.get(pk=jobs["alice_done"].pk).status == "done"

    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        selected = [str(jobs["alice_done"].pk), str(jobs["bob_done"].pk)]
        response = client.post(
            "/admin/jobs/job/", {"action": "retry_failed_items", "_selected_action": selected}, follow=True
        )
    assert "1 failed item queued again, from 2 selected jobs." in response.content.decode()
    retried = Job.objects.get(pk=jobs["alice_done"].pk)
    assert (retried.status, retried.failed_count) == ("queued", 0)
    assert len(enqueued) == 1


def test_a_job_in_the_admin_has_no_view_on_site_link_to_a_page_staff_cannot_open(client, staff, jobs):
    # The job page answers its owner only; for staff it would be a 404.
    job = jobs["bob_done"]
    client.force_login(staff)
    page = client.get(f"/admin/jobs/job/{job.pk}/change/").content.decode()
    assert "View on site" not in page and "/admin/r/" not in page
    assert client.get(job.get_absolute_url()).status_code == 404
