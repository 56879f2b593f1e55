"""The API tokens page: create (the key shown once), list, revoke."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from webapp.security.limits import limits_for, usage_of
from webapp.security.models import ApiToken

EXPIRY_CHOICES = [("", "Never"), ("7", "In 7 days"), ("30", "In 30 days"), ("90", "In 90 days"), ("365", "In a year")]


class NewTokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What it is for, e.g. “laptop scripts”.")
    expires_in_days = forms.TypedChoiceField(
        label="Expires", choices=EXPIRY_CHOICES, coerce=int, empty_value=None, required=False
    )

    def clean_name(self) -> str:
        return self.cleaned_data["name"].strip()


# The session holds a new key from the POST until the next GET shows it, once.
NEW_KEY_SESSION_KEY = "vq-new-api-token"


@never_cache  # the page after a POST carries the new key: no copy in any cache
@login_required
@require_http_methods(["GET", "POST"])
def token_list(request):
    """Post/Redirect/Get: a POST makes one token and redirects; the GET shows its key once.

    So reloading the page never makes a second token.
    """
    if request.method == "POST":
        form = NewTokenForm(request.POST)
        if form.is_valid():
            days = form.cleaned_data["expires_in_days"]
            expires_at = timezone.now() + timedelta(days=days) if days else None
            _, key = ApiToken.objects.issue(request.user, form.cleaned_data["name"], expires_at)
            request.session[NEW_KEY_SESSION_KEY] = key
            return redirect("token-list")
        status, new_key = 400, None
    else:
        # Shown by this answer, then forgotten: the next GET does not have it.
        form, status, new_key = NewTokenForm(), 200, request.session.pop(NEW_KEY_SESSION_KEY, None)
    context = {
        "form": form,
        "new_key": new_key,
        "tokens": ApiToken.objects.filter(user=request.user),
        "now": timezone.now(),
        "limits": limits_for(request.user),
        "usage": usage_of(request.user),
    }
    return render(request, "security/tokens.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def token_revoke(request, token_id):
    """GET asks to confirm (a script using the token stops working); POST revokes it."""
    # The owner is part of the lookup: another user's token ids are simply not found.
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    if request.method == "GET":
        return render(request, "security/token_revoke.html", {"token": token})
    token.delete()
    messages.success(request, f"Revoked “{token.name}” ({token.prefix}…): it no longer works.")
    return redirect("token-list")
