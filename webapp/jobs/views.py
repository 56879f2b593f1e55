"""Web pages: job list with an upload form, one page per job, owner-checked files."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from webapp.jobs.models import Item, Job
from webapp.jobs.services import JobRequestError, create_job, model_choices


@login_required
@require_http_methods(["GET", "POST"])
def job_list(request):
    if request.method == "POST":
        try:
            creation = create_job(request.user, request.FILES.getlist("images"), request.POST.get("model") or None)
        except JobRequestError as error:
            messages.error(request, str(error))
            return redirect("job-list")
        for rejection in creation.rejected:
            messages.warning(request, f"{rejection.filename}: {rejection.error}")
        if creation.job is None:
            messages.error(request, "No acceptable image in the upload; nothing was created.")
            return redirect("job-list")
        return redirect(creation.job)
    jobs = Paginator(Job.objects.filter(owner=request.user), 25).get_page(request.GET.get("page"))
    return render(request, "jobs/job_list.html", {"jobs": jobs, "models": model_choices()})


@login_required
@require_GET
def job_detail(request, job_id):
    job = get_object_or_404(Job, pk=job_id, owner=request.user)
    items = Paginator(job.items.order_by("pk"), 60).get_page(request.GET.get("page"))
    return render(request, "jobs/job_detail.html", {"job": job, "items": items})


def _owned_item(request, job_id, item_id) -> Item:
    # The owner is part of the lookup: another user's ids are simply not found.
    return get_object_or_404(Item, pk=item_id, job_id=job_id, job__owner=request.user)


@login_required
@require_GET
def item_image(request, job_id, item_id):
    item = _owned_item(request, job_id, item_id)
    return _file_response(item.file)


@login_required
@require_GET
def item_thumbnail(request, job_id, item_id):
    item = _owned_item(request, job_id, item_id)
    if not item.thumbnail:
        raise Http404("no thumbnail yet")
    return _file_response(item.thumbnail)


def _file_response(field_file) -> FileResponse:
    try:
        handle = field_file.open("rb")
    except FileNotFoundError:
        raise Http404("file missing") from None
    response = FileResponse(handle)
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response
