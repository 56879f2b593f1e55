"""Sign-up. Log in, log out and password changes are Django's own views."""

from __future__ import annotations

from django.contrib.auth import login
from django.contrib.auth.forms import UserCreationForm
from django.db import transaction
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from webapp.security.limits import SignupLimitExceeded, check_signup_allowed, record_signup
from webapp.security.login import client_ip


@require_http_methods(["GET", "POST"])
def signup(request):
    """Create an account (Django's password validators apply) and log straight in."""
    if request.user.is_authenticated:
        return redirect("upload")
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        address = client_ip(request)
        try:
            with transaction.atomic():
                # Per address, so that making accounts does not multiply the per-user upload limits.
                check_signup_allowed(address)
                user = form.save()
                record_signup(address)
        except SignupLimitExceeded as error:
            hours = -(-error.retry_after // 3600)
            form.add_error(None, f"{error}. Try again in {hours} hour{'s' if hours != 1 else ''}.")
            response = render(request, "registration/signup.html", {"form": form}, status=429)
            response["Retry-After"] = str(error.retry_after)
            return response
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("upload")
    return render(request, "registration/signup.html", {"form": form}, status=400 if form.errors else 200)
