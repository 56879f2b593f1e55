"""Sign-up. Log in, log out and password changes are Django's own views."""

from __future__ import annotations

from django.contrib.auth import login
from django.contrib.auth.forms import UserCreationForm
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods


@require_http_methods(["GET", "POST"])
def signup(request):
    """Create an account (Django's password validators apply) and log straight in."""
    if request.user.is_authenticated:
        return redirect("upload")
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("upload")
    return render(request, "registration/signup.html", {"form": form}, status=400 if form.errors else 200)
