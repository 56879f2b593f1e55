from django.contrib import admin

from webapp.jobs.models import Item, Job


class ItemInline(admin.TabularInline):
    model = Item
    fields = ["filename", "status", "top_label", "top_score", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    max_num = 0


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "owner", "status", "model_name", "total", "succeeded_count", "failed_count", "created_at", "finished_at"]
    list_filter = ["status", "model_name", "created_at"]
    search_fields = ["id", "owner__username"]
    readonly_fields = ["id", "total", "succeeded_count", "failed_count", "created_at", "started_at", "finished_at"]
    inlines = [ItemInline]


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["id", "filename", "job", "status", "top_label", "top_score", "attempts", "finished_at"]
    list_filter = ["status", "job__model_name"]
    search_fields = ["filename", "top_label", "sha256"]
    readonly_fields = ["job", "file", "thumbnail", "sha256", "predictions", "attempts", "created_at", "started_at", "finished_at", "decode_ms", "inference_ms"]
    list_select_related = ["job"]
