from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from webapp.security.models import ApiToken, UploadLimits


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Staff can see and revoke (delete) tokens; keys are made only where they can be shown once."""

    list_display = ["name", "user", "prefix", "created_at", "expires_at", "last_used_at"]
    list_filter = ["created_at", "expires_at"]
    search_fields = ["name", "prefix", "user__username"]
    readonly_fields = ["user", "name", "prefix", "created_at", "last_used_at"]
    fields = [*readonly_fields, "expires_at"]
    list_select_related = ["user"]

    def has_add_permission(self, request):
        return False


class UploadLimitsInline(admin.StackedInline):
    model = UploadLimits
    can_delete = True
    extra = 1  # the (blank) form is there to fill; left blank, nothing is saved
    max_num = 1
    verbose_name_plural = "upload limits (empty: the site defaults)"


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class UserWithLimitsAdmin(UserAdmin):
    inlines = [*UserAdmin.inlines, UploadLimitsInline]
