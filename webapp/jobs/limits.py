"""Request-level upload limits answered with a clear 4xx, never a 500 or a bare "Bad Request".

Four places can refuse an upload before our code sees a file: the body is
larger than VQ_MAX_REQUEST_BYTES (refused here from Content-Length, before it
is read), the body is chunked with no Content-Length (WSGI would hand Django
an empty body), or Django's own parser limits (DATA_UPLOAD_MAX_NUMBER_FILES,
DATA_UPLOAD_MAX_NUMBER_FIELDS, DATA_UPLOAD_MAX_MEMORY_SIZE) or a malformed
multipart body stop the parse. Each gets a message naming the limit: JSON for
the API, a short page for the browser.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import render

from webapp.jobs.validation import human_size


class RequestLimitsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if _is_chunked_without_length(request):
            # WSGI hands Django no body without a Content-Length: the upload
            # would look empty, and "no files were sent" would be a lie.
            return refusal(
                request,
                411,
                "the request body was sent in chunks (Transfer-Encoding: chunked) without a Content-Length, "
                "which this server cannot read; send it with a Content-Length (curl -F does); nothing was created",
            )
        length = _content_length(request)
        if length > settings.VQ_MAX_REQUEST_BYTES:
            return refusal(
                request,
                413,
                f"the upload is {human_size(length)}, over the limit of "
                f"{human_size(settings.VQ_MAX_REQUEST_BYTES)} per request; nothing was created",
            )
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs):
        # CSRF-protected pages have their body parsed by CsrfViewMiddleware,
        # where a limit error would become Django's bare 400. Parse it here
        # first to answer clearly. API views are CSRF-exempt: DRF parses after
        # authentication, and process_exception below answers for them.
        if request.method != "POST" or getattr(view_func, "csrf_exempt", False):
            return None
        try:
            request.POST  # noqa: B018 - parses the body, files included
        except (TooManyFilesSent, TooManyFieldsSent, RequestDataTooBig, MultiPartParserError) as error:
            return self._refuse(request, error)
        return None

    def process_exception(self, request: HttpRequest, exception: Exception):
        if isinstance(exception, (TooManyFilesSent, TooManyFieldsSent, RequestDataTooBig, MultiPartParserError)):
            return self._refuse(request, exception)
        return None

    def _refuse(self, request: HttpRequest, error: Exception) -> HttpResponse:
        status, message = describe_parse_error(error)
        return refusal(request, status, message)


def describe_parse_error(error: Exception) -> tuple[int, str]:
    if isinstance(error, TooManyFilesSent):
        return 400, (
            f"the request carries more than {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files; a job takes at most "
            f"{settings.VQ_MAX_FILES_PER_JOB} images (send more as a .zip archive or as several jobs); "
            "nothing was created"
        )
    if isinstance(error, TooManyFieldsSent):
        return 400, (
            f"the request carries more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} form fields; nothing was created"
        )
    if isinstance(error, RequestDataTooBig):
        return 413, (
            f"the form fields besides the files exceed {human_size(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)}; "
            "nothing was created"
        )
    return 400, f"the upload is not a well-formed multipart/form-data body ({error}); nothing was created"


def refusal(request: HttpRequest, status: int, message: str, retry_after: int | None = None) -> HttpResponse:
    """The same refusal as JSON for the API and as a short page for a browser."""
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": message, "rejected": []}, status=status)
    else:
        response = render(request, "jobs/upload_refused.html", {"message": message, "status": status}, status=status)
    if retry_after:
        response["Retry-After"] = str(retry_after)
    return response


def _content_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _is_chunked_without_length(request: HttpRequest) -> bool:
    chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
    return chunked and not request.META.get("CONTENT_LENGTH")
