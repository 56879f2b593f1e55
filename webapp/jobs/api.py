"""REST API. The contract (fields and status codes) is documented in README "API"."""

from __future__ import annotations

from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from webapp.jobs.models import Item, Job
from webapp.jobs import services
from webapp.jobs.services import JobRequestError, create_job


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


class JobViewSet(mixins.CreateModelMixin, mixins.RetrieveModelMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """Create jobs from uploaded images; read their status and results."""

    serializer_class = JobSerializer
    parser_classes = [MultiPartParser, FormParser]
    lookup_value_converter = "uuid"

    def get_queryset(self):
        # Only the caller's jobs exist for them: anyone else's id is a 404.
        return Job.objects.filter(owner=self.request.user)

    def create(self, request, *args, **kwargs):
        try:
            creation = create_job(
                request.user, request.FILES.getlist("images"), model_name=request.data.get("model") or None
            )
        except JobRequestError as error:
            return Response({"detail": str(error), "rejected": []}, status=status.HTTP_400_BAD_REQUEST)
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

    @action(detail=True, methods=["get"])
    def results(self, request, pk=None):
        job = self.get_object()
        page = self.paginate_queryset(job.items.order_by("pk"))
        return self.get_paginated_response(ItemResultSerializer(page, many=True).data)

    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Stop an open job: 200 with the job, or 409 if it had already finished."""
        job = self.get_object()
        if not services.cancel(job):
            job.refresh_from_db()
            return Response(
                {"detail": f"job is {job.status}; only a queued or running job can be cancelled"},
                status=status.HTTP_409_CONFLICT,
            )
        return Response(JobSerializer(job).data)

    @action(detail=True, methods=["post"], url_path="retry-failed")
    def retry_failed(self, request, pk=None):
        """Queue a done job's failed items again: 200 {"retried": n, "job": {...}}."""
        job = self.get_object()
        retried = services.retry_failed(job)
        return Response({"retried": retried, "job": JobSerializer(job).data})
