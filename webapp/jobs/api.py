"""REST API. The contract (fields and status codes) is documented in README "API"."""

from __future__ import annotations

from contextlib import contextmanager

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ParseError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from ml import available_models
from webapp.jobs.models import Item, Job
from webapp.jobs import services
from webapp.jobs.services import JobRequestError, QueueUnavailable, UploadLimitExceeded, create_job, delete_job
from webapp.jobs.upload_form import FormRefused, read_upload_form


class JobSerializer(serializers.ModelSerializer):
    succeeded = serializers.IntegerField(source="succeeded_count")
    failed = serializers.IntegerField(source="failed_count")
    progress = serializers.FloatField()
    model = serializers.CharField(source="model_name")

    class Meta:
        model = Job
        fields = ["id", "status", "total", "succeeded", "failed", "progress", "model", "created_at", "finished_at"]
        read_only_fields = fields


class ItemResultSerializer(serializers.ModelSerializer):
    error = serializers.SerializerMethodField()
    predictions = serializers.SerializerMethodField()

    class Meta:
        model = Item
        fields = ["id", "filename", "status", "error", "predictions"]
        read_only_fields = fields

    def get_error(self, item: Item) -> str | None:
        return item.error or None

    def get_predictions(self, item: Item) -> list[dict]:
        return item.predictions or []


class PredictionSerializer(serializers.Serializer):
    label = serializers.CharField()
    class_index = serializers.IntegerField()
    score = serializers.FloatField()


class ItemResultSchema(ItemResultSerializer):
    """ItemResultSerializer as the schema describes it (the method fields typed)."""

    error = serializers.CharField(allow_null=True)
    predictions = PredictionSerializer(many=True)


class ItemResultsPageSchema(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = ItemResultSchema(many=True)


class JobUploadSerializer(serializers.Serializer):
    """The multipart form of POST /api/jobs/ (documentation only; the view reads request.FILES)."""

    images = serializers.ListField(
        child=serializers.FileField(), min_length=1, help_text="Repeat the field for each image."
    )
    model = serializers.ChoiceField(
        choices=available_models(), required=False, help_text="Default: the site's default model."
    )


class RejectionSerializer(serializers.Serializer):
    filename = serializers.CharField()
    error = serializers.CharField()


class JobCreatedSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=Job.Status.choices)
    total = serializers.IntegerField()
    rejected = RejectionSerializer(many=True)


class UploadRefusedSerializer(serializers.Serializer):
    detail = serializers.CharField()
    rejected = RejectionSerializer(many=True)


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField()


class CancelledSerializer(JobSerializer):
    """The job after a cancel, and what the cancel did (documentation of the 200 answer)."""

    detail = serializers.CharField(
        help_text="what cancelling did: queued images will not run; those already running may still finish"
    )

    class Meta(JobSerializer.Meta):
        fields = [*JobSerializer.Meta.fields, "detail"]
        read_only_fields = fields


class RetriedSerializer(serializers.Serializer):
    retried = serializers.IntegerField(help_text="failed images queued again (0 unless the job was done)")
    job = JobSerializer()


RETRY_AFTER = OpenApiParameter(
    "Retry-After", OpenApiTypes.INT, location=OpenApiParameter.HEADER, response=[429],
    description="seconds until the upload would be accepted",
)  # fmt: skip
BROKER_RETRY_AFTER = OpenApiParameter(
    "Retry-After", OpenApiTypes.INT, location=OpenApiParameter.HEADER, response=[503],
    description="seconds to wait before trying again",
)  # fmt: skip
NOT_FOUND = OpenApiResponse(DetailSerializer, description="no such job of yours, or no such page")
NO_SUCH_PAGE = OpenApiResponse(DetailSerializer, description="no such page")
BAD_PAGE_SIZE = OpenApiResponse(OpenApiTypes.OBJECT, description="page or page_size is not a whole number from 1")


@extend_schema_view(
    list=extend_schema(
        summary="Your jobs, newest first",
        responses={200: JobSerializer(many=True), 400: BAD_PAGE_SIZE, 404: NO_SUCH_PAGE},
    ),
    retrieve=extend_schema(summary="A job's status and counters", responses={200: JobSerializer, 404: NOT_FOUND}),
    create=extend_schema(
        summary="Upload images as a new job",
        request={"multipart/form-data": JobUploadSerializer},
        parameters=[RETRY_AFTER],
        responses={
            201: JobCreatedSerializer,
            400: OpenApiResponse(UploadRefusedSerializer, description="no acceptable image, or a bad request"),
            411: OpenApiResponse(UploadRefusedSerializer, description="a chunked body without a Content-Length"),
            413: OpenApiResponse(UploadRefusedSerializer, description="the body is over the size limit per request"),
            415: OpenApiResponse(DetailSerializer, description="not a multipart/form-data or form body"),
            429: OpenApiResponse(
                DetailSerializer,
                description="over the upload rate limit or the daily image quota; Retry-After says when to retry",
            ),
        },
    ),
    destroy=extend_schema(
        summary="Delete a job, its results and its files (a running job is cancelled first)",
        responses={204: None, 404: NOT_FOUND},
    ),
    cancel=extend_schema(
        summary="Cancel an open job: queued images will not run; those already running may still finish",
        request=None,
        responses={
            200: CancelledSerializer, 404: NOT_FOUND,
            409: OpenApiResponse(DetailSerializer, description="the job had already finished"),
        },
    ),  # fmt: skip
    retry_failed=extend_schema(
        summary="Send a done job's failed images through the workers again",
        request=None,
        parameters=[BROKER_RETRY_AFTER],
        responses={
            200: RetriedSerializer, 404: NOT_FOUND,
            503: OpenApiResponse(
                DetailSerializer, description="the job queue (Redis) is not answering: nothing was retried"
            ),
        },
    ),  # fmt: skip
    results=extend_schema(
        summary="Per-image results, in upload order",
        parameters=[
            OpenApiParameter("page", {"type": "integer", "minimum": 1}, description="page number, from 1"),
            OpenApiParameter(
                "page_size", {"type": "integer", "minimum": 1},
                description="results per page; more than 500 gives 500",
            ),  # fmt: skip
        ],
        responses={200: ItemResultsPageSchema, 400: BAD_PAGE_SIZE, 404: NOT_FOUND},
    ),
)
class JobViewSet(
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.ListModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Create jobs from uploaded images; read their status and results; delete them."""

    serializer_class = JobSerializer
    parser_classes = [MultiPartParser, FormParser]
    lookup_value_converter = "uuid"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular reading the types
            return Job.objects.none()
        # Only the caller's jobs exist for them: anyone else's id is a 404.
        return Job.objects.filter(owner=self.request.user)

    def create(self, request, *args, **kwargs):
        try:
            form = read_upload_form(request.POST, request.FILES)
        except ParseError as error:
            # A malformed multipart body: the same 400 shape as every other refusal.
            return Response({"detail": str(error.detail), "rejected": []}, status=status.HTTP_400_BAD_REQUEST)
        except FormRefused as refusal:
            return Response(
                {"detail": f"{refusal}; nothing was created", "rejected": [r.as_dict() for r in refusal.rejected]},
                status=status.HTTP_400_BAD_REQUEST,
            )
        try:
            creation = create_job(request.user, form.uploads, model_name=form.model_name, refused=form.refused)
        except JobRequestError as error:
            headers = {"Retry-After": str(error.retry_after_seconds)} if isinstance(error, QueueUnavailable) else None
            return Response({"detail": str(error), "rejected": []}, status=error.status_code, headers=headers)
        except UploadLimitExceeded as error:
            return Response(
                {"detail": f"{error}; try again in {error.retry_after} s"},
                status=status.HTTP_429_TOO_MANY_REQUESTS,
                headers={"Retry-After": str(error.retry_after)},
            )
        rejected = [rejection.as_dict() for rejection in creation.rejected]
        if creation.job is None:
            return Response(
                {"detail": "no acceptable image in the upload; nothing was created", "rejected": rejected},
                status=status.HTTP_400_BAD_REQUEST,
            )
        job = creation.job
        return Response(
            {"id": job.pk, "status": job.status, "total": job.total, "rejected": rejected},
            status=status.HTTP_201_CREATED,
            headers={"Location": f"/api/jobs/{job.pk}/"},
        )

    def perform_destroy(self, job):
        delete_job(job)

    @action(detail=True, methods=["get"])
    def results(self, request, pk=None):
        job = self.get_object()
        page = self.paginate_queryset(job.items.order_by("pk"))
        return self.get_paginated_response(ItemResultSerializer(page, many=True).data)

    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Stop an open job: 200 with the job and a `detail` saying what that did, or 409 if it had already finished."""
        job = self.get_object()
        with _deleted_meanwhile_is_404():
            cancelled = services.cancel(job)
            if not cancelled:
                job.refresh_from_db()
        if not cancelled:
            return Response(
                {"detail": f"job is {job.status}; only a queued or running job can be cancelled"},
                status=status.HTTP_409_CONFLICT,
            )
        return Response({**JobSerializer(job).data, "detail": services.cancel_summary(job)})

    @action(detail=True, methods=["post"], url_path="retry-failed")
    def retry_failed(self, request, pk=None):
        """Queue a done job's failed items again: 200 {"retried": n, "job": {...}}."""
        job = self.get_object()
        try:
            with _deleted_meanwhile_is_404():
                retried = services.retry_failed(job)
                job.refresh_from_db()  # also when nothing was retried: the job may be gone
        except QueueUnavailable as error:
            return Response(
                {"detail": str(error)},
                status=error.status_code,
                headers={"Retry-After": str(error.retry_after_seconds)},
            )
        return Response({"retried": retried, "job": JobSerializer(job).data})


@contextmanager
def _deleted_meanwhile_is_404():
    """A job deleted by another request after this one looked it up is not found, like any missing job."""
    try:
        yield
    except Job.DoesNotExist:
        raise NotFound() from None
