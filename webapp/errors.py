"""Error answers: JSON under /api/ (what API clients and the schema expect), HTML elsewhere.

The handlers below serve when DEBUG is off. With DEBUG on, Django answers
404s and uncaught exceptions with its debug pages instead, and never calls
them; ApiErrorsMiddleware turns any such HTML error under /api/ into the
same JSON, so an API client sees one shape whatever the setting. The
traceback still goes to the log (django.request) either way.
"""

from __future__ import annotations

from django.http import JsonResponse
from django.views import defaults

API_PREFIX = "/api/"
DETAILS = {
    400: "Bad request.",
    403: "Forbidden.",
    404: "Not found.",
    500: "Server error; it has been logged.",
}


def _is_api(request) -> bool:
    return request.path.startswith(API_PREFIX)


def _json_error(status: int) -> JsonResponse:
    return JsonResponse({"detail": DETAILS[status]}, status=status)


def not_found(request, exception=None):
    if _is_api(request):
        return _json_error(404)
    return defaults.page_not_found(request, exception)


def bad_request(request, exception=None):
    if _is_api(request):
        return _json_error(400)
    return defaults.bad_request(request, exception)


def permission_denied(request, exception=None):
    if _is_api(request):
        return _json_error(403)
    return defaults.permission_denied(request, exception)


def server_error(request):
    if _is_api(request):
        return _json_error(500)
    return defaults.server_error(request)


class ApiErrorsMiddleware:
    """Under /api/, an error answered with an HTML page (Django's, or its DEBUG pages) becomes JSON."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            _is_api(request)
            and response.status_code in DETAILS
            and "json" not in response.get("Content-Type", "")
        ):
            return _json_error(response.status_code)
        return response
