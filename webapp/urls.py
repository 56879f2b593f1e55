from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from webapp.jobs import accounts

urlpatterns = [
    path("admin/", admin.site.urls),
    # Sign up, log in, log out. No password reset by email: nothing here sends mail.
    path("accounts/signup/", accounts.signup, name="signup"),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("webapp.jobs.urls")),
]
