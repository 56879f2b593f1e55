"""Django admin for staff: every user's jobs and images, read-only except for named actions.

Rows change state only through the domain actions (cancel, retry failed), so
the admin never hand-edits a status or a counter the workers also write.
Staff see images through an admin-only view; the pages' file views serve
owners only.
"""

from django.contrib import admin, messages
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import ngettext

from webapp.jobs import services
from webapp.jobs.models import Item, Job
from webapp.jobs.views import serve_private_file


class ReadOnlyAdminMixin:
    """Jobs and items come from uploads and workers, not from forms."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ItemInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Item
    fields = ["filename", "status", "top_label", "top_score", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    # A big job would make the job page huge; the item list filters by job instead.
    max_num = 0
    classes = ["collapse"]


@admin.register(Job)
class JobAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["short_id", "owner", "status", "model_name", "progress_display", "failed_count", "created_at"]
    list_filter = ["status", "model_name", ("owner", admin.RelatedOnlyFieldListFilter), "created_at"]
    search_fields = ["id", "owner__username", "items__filename", "items__top_label"]
    list_select_related = ["owner"]
    date_hierarchy = "created_at"
    fields = ["id", "owner", "status", "model_name", "total", "succeeded_count", "failed_count",
              "created_at", "started_at", "finished_at", "retried_at", "items_link"]  # fmt: skip
    readonly_fields = fields
    inlines = [ItemInline]
    actions = ["retry_failed_items", "cancel_jobs"]
    # The job page shows a job to its owner only: for any other staff member
    # "View on site" would be a 404. This admin page is staff's view of a job.
    view_on_site = False

    @admin.display(description="job", ordering="created_at")
    def short_id(self, job: Job) -> str:
        return str(job.pk)[:8]

    @admin.display(description="progress")
    def progress_display(self, job: Job) -> str:
        return f"{job.finished_count}/{job.total}"

    @admin.display(description="items")
    def items_link(self, job: Job) -> str:
        url = reverse("admin:jobs_item_changelist") + f"?job__id__exact={job.pk}"
        return format_html('<a href="{}">{} images of this job</a>', url, job.total)

    def has_manage_permission(self, request) -> bool:
        # The actions change jobs, so they need the change permission the form itself never uses.
        return request.user.has_perm("jobs.change_job")

    @admin.action(description="Retry failed items of the selected done jobs", permissions=["manage"])
    def retry_failed_items(self, request, queryset):
        jobs = list(queryset)
        retried = 0
        for done, job in enumerate(jobs):
            try:
                retried += services.retry_failed(job)
            except services.QueueUnavailable as error:
                reason = str(error)
                if done:
                    items = ngettext("%d failed item was", "%d failed items were", retried) % retried
                    reason = (
                        f"the job queue (Redis) stopped answering: {items} queued again, from the first {done} of "
                        f"{len(jobs)} selected jobs; the others were left as they were, please try again in a minute"
                    )
                self.message_user(request, f"{reason[:1].upper()}{reason[1:]}.", messages.ERROR)
                return
        self.message_user(request, ngettext(
            "%(items)s queued again, from %(n)d selected job.", "%(items)s queued again, from %(n)d selected jobs.",
            len(jobs),
        ) % {"items": ngettext("%d failed item", "%d failed items", retried) % retried, "n": len(jobs)})  # fmt: skip

    @admin.action(description="Cancel the selected jobs", permissions=["manage"])
    def cancel_jobs(self, request, queryset):
        jobs = list(queryset)
        cancelled = sum(services.cancel(job) for job in jobs)
        skipped = len(jobs) - cancelled
        level = messages.SUCCESS if cancelled else messages.WARNING
        self.message_user(request, " ".join([
            ngettext("%d job cancelled:", "%d jobs cancelled:", cancelled) % cancelled,
            f"their queued images {services.CANCEL_EFFECT}.",
            ngettext("%d had already finished and was left as it was.",
                     "%d had already finished and were left as they were.", skipped) % skipped,
        ]), level)  # fmt: skip


@admin.register(Item)
class ItemAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["thumbnail_preview", "filename", "job_link", "owner", "status", "top_label", "top_score",
                    "attempts", "finished_at"]  # fmt: skip
    list_display_links = ["thumbnail_preview", "filename"]
    list_filter = ["status", "job__model_name", ("job__owner", admin.RelatedOnlyFieldListFilter), "created_at"]
    # job__id by substring, so the short id the job page shows (its first 8 characters) finds its items.
    search_fields = ["filename", "top_label", "sha256", "job__id"]
    list_select_related = ["job", "job__owner"]
    fields = ["thumbnail_preview", "filename", "job_link", "owner", "status", "error", "predictions_table",
              "format", "width", "height", "size_bytes", "sha256", "attempts", "created_at", "started_at",
              "finished_at", "decode_ms", "inference_ms", "original"]  # fmt: skip
    readonly_fields = fields

    def has_delete_permission(self, request, obj=None):
        # An item removed alone would leave its job's counters wrong; delete the job.
        return False

    def get_urls(self):
        # Staff see any user's images here; the pages' file views serve owners only.
        files = [
            path(f"<int:item_id>/{kind}/", self.admin_site.admin_view(self.file_view), {"kind": kind},
                 name=f"jobs_item_{kind}")
            for kind in ("thumbnail", "image")
        ]  # fmt: skip
        return [*files, *super().get_urls()]

    def file_view(self, request, item_id, kind):
        item = get_object_or_404(Item, pk=item_id)
        stored = item.thumbnail if kind == "thumbnail" else item.file
        if not self.has_view_permission(request, item) or not stored:
            raise Http404("no such file")
        return serve_private_file(stored)

    @admin.display(description="file")
    def original(self, item: Item) -> str:
        url = reverse("admin:jobs_item_image", args=[item.pk])
        return format_html('<a href="{}">original image</a> ({})', url, item.file.name)

    @admin.display(description="image")
    def thumbnail_preview(self, item: Item) -> str:
        if not item.thumbnail:
            return "—"
        url = reverse("admin:jobs_item_thumbnail", args=[item.pk])
        return format_html(
            '<img src="{}" alt="" width="64" height="64" style="object-fit:cover;border-radius:4px">', url
        )

    @admin.display(description="job", ordering="job__created_at")
    def job_link(self, item: Item) -> str:
        url = reverse("admin:jobs_job_change", args=[item.job_id])
        return format_html('<a href="{}">{}</a>', url, str(item.job_id)[:8])

    @admin.display(description="owner", ordering="job__owner__username")
    def owner(self, item: Item) -> str:
        return item.job.owner.get_username()

    @admin.display(description="predictions")
    def predictions_table(self, item: Item) -> str:
        if not item.predictions:
            return "—"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td style='text-align:right'>{}</td></tr>",
            ((rank, p["label"], f"{p['score']:.4f}") for rank, p in enumerate(item.predictions, start=1)),
        )
        return format_html("<table><thead><tr><th>#</th><th>label</th><th>score</th></tr></thead>{}</table>", rows)
