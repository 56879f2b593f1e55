from django.contrib import admin
from django.urls import include, path

from webapp.jobs import accounts

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/signup/", accounts.signup, name="signup"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("webapp.jobs.urls")),
]
