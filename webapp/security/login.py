"""Login throttling: django-axes, configured for this deployment."""

from __future__ import annotations

import math

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_cool_off
from django.conf import settings
from django.shortcuts import render


class LoginThrottleBackend(AxesStandaloneBackend):
    """Refuse logins for a locked-out username + address; authenticates nobody itself.

    Every login over HTTP (the login page, the admin's) passes the request.
    A call without one (a shell, a script, Django's test client.login) has no
    client address to throttle by, so it is left to the next backend instead
    of failing outright, as axes's own backend does.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def client_ip(request) -> str | None:
    """The client's address: REMOTE_ADDR, or the one our own proxies saw.

    With VQ_TRUSTED_PROXIES = N, the N-th address from the right of
    X-Forwarded-For is the one the outermost trusted proxy received the
    request from; anything left of it was written by the client and is not
    trusted (it would let an attacker pick a fresh address per attempt).
    """
    proxies = settings.VQ_TRUSTED_PROXIES
    if proxies:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR")


def locked_out(request, original_response=None, credentials=None):
    """axes's answer to a locked-out login: 429, a page that says when, and Retry-After."""
    cool_off = get_cool_off(request)
    seconds = math.ceil(cool_off.total_seconds()) if cool_off else None
    response = render(
        request, "security/locked_out.html", {"minutes": math.ceil(seconds / 60) if seconds else None}, status=429
    )
    if seconds:
        response["Retry-After"] = str(seconds)
    return response
