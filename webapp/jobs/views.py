"""Web pages: upload, job list, job page with live progress, gallery, search, downloads.

Every view looks rows up with the owner in the query, so another user's job,
item or file answers 404 exactly like an id that does not exist.
"""

from __future__ import annotations

import mimetypes
from contextlib import contextmanager
from urllib.parse import quote

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils.http import content_disposition_header
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from webapp.jobs import exports
from webapp.jobs.models import Item, Job
from webapp.jobs.params import id_list
from webapp.jobs.upload_form import FormRefused, read_upload_form
from webapp.jobs.services import (
    JobRequestError,
    QueueUnavailable,
    UploadLimitExceeded,
    cancel,
    cancel_summary,
    create_job,
    delete_job,
    model_choices,
    retry_failed,
)

JOBS_PER_PAGE = 20
TILES_PER_PAGE = 60
# The progress endpoint reports at most one gallery page of items per call.
MAX_POLLED_ITEMS = TILES_PER_PAGE
# Formats a browser shows in <img>; others (TIFF) get their thumbnail and a download link.
BROWSER_FORMATS = {"JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP"}
# Rejections kept in the session for the job page; the rest are counted.
MAX_REJECTIONS_SHOWN = 100


@login_required
@require_http_methods(["GET", "POST"])
def upload(request):
    """The upload form; a POST becomes one job (or a 400 naming every rejected file)."""
    context = {
        "models": model_choices(),
        "default_model": settings.VQ_DEFAULT_MODEL,
        "chosen_model": request.POST.get("model") or settings.VQ_DEFAULT_MODEL,
        "max_files": settings.VQ_MAX_FILES_PER_JOB,
        "max_file_bytes": settings.VQ_MAX_FILE_BYTES,
    }
    if request.method == "GET":
        return render(request, "jobs/upload.html", context)
    try:
        form = read_upload_form(request.POST, request.FILES)
    except FormRefused as refusal:
        context.update(error=f"{str(refusal).capitalize()}; nothing was created.", rejected=refusal.rejected)
        return render(request, "jobs/upload.html", context, status=400)
    try:
        creation = create_job(request.user, form.uploads, form.model_name or None, refused=form.refused)
    except JobRequestError as error:
        # 400 for the upload's own problems; 503 (with Retry-After) when the queue is down.
        response = render(request, "jobs/upload.html", {**context, "error": str(error)}, status=error.status_code)
        if retry_after := getattr(error, "retry_after_seconds", None):
            response["Retry-After"] = str(retry_after)
        return response
    except UploadLimitExceeded as error:
        minutes = -(-error.retry_after // 60)
        wait = ngettext("Try again in %(n)d minute.", "Try again in %(n)d minutes.", minutes) % {"n": minutes}
        message = f"{str(error).capitalize()}. {wait}"
        response = render(request, "jobs/upload.html", {**context, "error": message}, status=429)
        response["Retry-After"] = str(error.retry_after)
        return response
    if creation.job is None:
        context.update(error="No acceptable image in the upload; nothing was created.", rejected=creation.rejected)
        return render(request, "jobs/upload.html", context, status=400)
    if creation.rejected:
        # The job page lists these once, under its heading.
        request.session[_rejected_key(creation.job.pk)] = {
            "count": len(creation.rejected),
            "shown": [rejection.as_dict() for rejection in creation.rejected[:MAX_REJECTIONS_SHOWN]],
            "more": max(0, len(creation.rejected) - MAX_REJECTIONS_SHOWN),
        }
    return redirect(creation.job)


def _rejected_key(job_id) -> str:
    return f"vq-rejected-{job_id}"


@login_required
@require_GET
def job_list(request):
    jobs = Job.objects.filter(owner=request.user)
    status = request.GET.get("status") or ""
    if status in Job.Status.values:
        jobs = jobs.filter(status=status)
    else:
        status = ""
    page = Paginator(jobs.order_by("-created_at"), JOBS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "jobs/job_list.html",
        {"jobs": page, "status": status, "statuses": Job.Status.choices, "has_any_job": request.user.jobs.exists()},
    )


def _owned_job(request, job_id) -> Job:
    return get_object_or_404(Job, pk=job_id, owner=request.user)


@contextmanager
def _deleted_meanwhile_is_404():
    """A job deleted by another request after this one looked it up is not found, like any missing job."""
    try:
        yield
    except Job.DoesNotExist:
        raise Http404("job deleted meanwhile") from None


@login_required
@require_GET
def job_detail(request, job_id):
    return _job_page(request, _owned_job(request, job_id))


def _job_page(request, job: Job, status: int = 200):
    items = Paginator(job.items.order_by("pk"), TILES_PER_PAGE).get_page(request.GET.get("page"))
    rejected = request.session.pop(_rejected_key(job.pk), None)
    return render(
        request,
        "jobs/job_detail.html",
        {"job": job, "items": items, "rejected": rejected, "actions_key": _actions_key(job)},
        status=status,
    )


@login_required
@require_GET
def job_progress(request, job_id):
    """Small JSON for the job page's poller: counters, and the listed items' tiles.

    `?items=1,2,3` names the tiles still open on the page; each comes back with
    its status and its tile's HTML, rendered by the same template as the page.
    """
    job = _owned_job(request, job_id)
    try:
        wanted = id_list(request.GET.get("items", ""), most=MAX_POLLED_ITEMS)
    except ValueError as error:
        return JsonResponse({"detail": f"items: {error}"}, status=400)
    items = job.items.filter(pk__in=wanted).order_by("pk") if wanted else []
    return JsonResponse(
        {
            "status": job.status,
            "is_open": job.is_open,
            "total": job.total,
            "succeeded": job.succeeded_count,
            "failed": job.failed_count,
            "finished": job.finished_count,
            "progress": job.progress,
            "percent": _percent(job),
            "actions_key": _actions_key(job),
            "actions_html": render_to_string("jobs/_job_actions.html", {"job": job}, request=request),
            "items": [
                {
                    "id": item.pk,
                    "status": item.status,
                    "html": render_to_string("jobs/_item_tile.html", {"job": job, "item": item}, request=request),
                }
                for item in items
            ],
        },
        headers={"Cache-Control": "no-store"},
    )


def _actions_key(job: Job) -> str:
    # What decides which buttons _job_actions.html shows.
    return f"{job.status}:{job.failed_count}"


def _percent(job: Job) -> int:
    # Floor, so "100%" appears only when every item has finished.
    return int(job.progress * 100)


@login_required
@require_POST
def job_cancel(request, job_id):
    job = _owned_job(request, job_id)
    with _deleted_meanwhile_is_404():
        cancelled = cancel(job)
        if not cancelled:
            job.refresh_from_db()  # finished, or deleted by another request
    if cancelled:
        messages.success(request, cancel_summary(job))
    else:
        messages.info(request, "The job had already finished; nothing to cancel.")
    return redirect(job)


@login_required
@require_POST
def job_retry_failed(request, job_id):
    job = _owned_job(request, job_id)
    try:
        with _deleted_meanwhile_is_404():
            retried = retry_failed(job)
            if not retried:
                job.refresh_from_db()  # not done yet, or deleted by another request
    except QueueUnavailable as error:
        # The job page again, saying why, with the status an upload gets when the queue is down.
        reason = str(error)
        messages.error(request, f"{reason[:1].upper()}{reason[1:]}.")
        response = _job_page(request, job, status=error.status_code)
        response["Retry-After"] = str(error.retry_after_seconds)
        return response
    if retried:
        messages.success(request, ngettext(
            "%(n)d failed image sent to the workers again.", "%(n)d failed images sent to the workers again.", retried
        ) % {"n": retried})  # fmt: skip
    else:
        messages.info(request, "Nothing to retry: only a finished job's failed images can be retried.")
    return redirect(job)


@login_required
@require_GET
def job_results_csv(request, job_id):
    job = _owned_job(request, job_id)
    response = StreamingHttpResponse(exports.csv_lines(job), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{exports.download_name(job, "csv")}"'
    return response


@login_required
@require_GET
def job_results_json(request, job_id):
    job = _owned_job(request, job_id)
    response = StreamingHttpResponse(exports.json_chunks(job), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="{exports.download_name(job, "json")}"'
    return response


@login_required
@require_http_methods(["GET", "POST"])
def job_delete(request, job_id):
    """GET asks to confirm; POST deletes the job, its results and its files."""
    job = _owned_job(request, job_id)
    if request.method == "GET":
        return render(request, "jobs/job_delete.html", {"job": job})
    delete_job(job)
    messages.success(request, ngettext(
        "Job %(job)s and its %(n)d image were deleted.", "Job %(job)s and its %(n)d images were deleted.", job.total
    ) % {"job": str(job_id)[:8], "n": job.total})  # fmt: skip
    return redirect("job-list")


def _owned_item(request, job_id, item_id) -> Item:
    # The owner is part of the lookup: another user's ids are simply not found.
    return get_object_or_404(Item.objects.select_related("job"), pk=item_id, job_id=job_id, job__owner=request.user)


@login_required
@require_GET
def item_detail(request, job_id, item_id):
    item = _owned_item(request, job_id, item_id)
    siblings = item.job.items.order_by("pk")
    return render(
        request,
        "jobs/item_detail.html",
        {
            "job": item.job,
            "item": item,
            "show_original": item.format in BROWSER_FORMATS,
            "position": siblings.filter(pk__lte=item.pk).count(),
            "previous": siblings.filter(pk__lt=item.pk).order_by("-pk").values_list("pk", flat=True).first(),
            "next": siblings.filter(pk__gt=item.pk).values_list("pk", flat=True).first(),
        },
    )


@login_required
@require_GET
def search(request):
    """Every image of mine whose top-1 label contains each word of the query, newest job first."""
    # NUL never matches a label, and PostgreSQL refuses it in a query.
    query = request.GET.get("q", "").replace("\x00", "").strip()[:128]
    # Every word, in any order: "mau egyptian" finds "Egyptian Mau".
    words = query.split()[:8]
    page = None
    if words:
        found = Item.objects.filter(job__owner=request.user, status=Item.Status.SUCCEEDED)
        for word in words:
            found = found.filter(top_label__icontains=word)
        found = found.select_related("job").order_by("-job__created_at", "pk")
        page = Paginator(found, TILES_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "jobs/search.html", {"query": query, "words": words, "items": page})


@login_required
@require_GET
def item_image(request, job_id, item_id):
    item = _owned_item(request, job_id, item_id)
    if request.GET.get("download"):
        # Saved under the name it was uploaded with; shown inline, the type
        # comes from the stored name, whose extension we chose from the bytes.
        return serve_private_file(item.file, as_attachment=True, filename=item.filename)
    return serve_private_file(item.file)


@login_required
@require_GET
def item_thumbnail(request, job_id, item_id):
    item = _owned_item(request, job_id, item_id)
    if not item.thumbnail:
        raise Http404("no thumbnail yet")
    return serve_private_file(item.thumbnail)


def serve_private_file(field_file, as_attachment: bool = False, filename: str = "") -> HttpResponse:
    """Send a stored upload or thumbnail; callers have checked who may see it.

    Django streams it, or (VQ_FILE_SERVING) hands it to the web server with
    X-Accel-Redirect (nginx) or X-Sendfile (Apache, lighttpd).
    """
    if settings.VQ_FILE_SERVING == "django":
        try:
            handle = field_file.open("rb")
        except FileNotFoundError:
            raise Http404("file missing") from None
        response = FileResponse(handle, as_attachment=as_attachment, filename=filename)
    else:
        # Names are ours (uploads/<job>/<random>.<ext>), but resolve them
        # through the storage anyway: it refuses anything outside MEDIA_ROOT.
        path = default_storage.path(field_file.name)
        if not default_storage.exists(field_file.name):
            raise Http404("file missing")
        response = HttpResponse(content_type=mimetypes.guess_type(path)[0] or "application/octet-stream")
        if as_attachment:
            response["Content-Disposition"] = content_disposition_header(True, filename or field_file.name)
        if settings.VQ_FILE_SERVING == "x-accel-redirect":
            response["X-Accel-Redirect"] = settings.VQ_X_ACCEL_PREFIX.rstrip("/") + "/" + quote(field_file.name)
        else:
            response["X-Sendfile"] = path
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    # An image opened on its own is a document: let it run nothing.
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
