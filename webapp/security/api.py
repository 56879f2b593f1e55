"""REST API for the caller's own API tokens: list, create (key shown once), revoke."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from webapp.jobs.api import DetailSerializer
from webapp.security.models import ApiToken


class ApiTokenSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "expires_at", "last_used_at"]
        read_only_fields = ["id", "prefix", "created_at", "last_used_at"]

    def validate_name(self, name: str) -> str:
        if not name.strip():
            raise serializers.ValidationError("give the token a name")
        return name.strip()

    def validate_expires_at(self, expires_at):
        if expires_at is not None and expires_at <= timezone.now():
            raise serializers.ValidationError("the expiry must be in the future")
        return expires_at


class NewApiTokenSerializer(ApiTokenSerializer):
    key = serializers.CharField(read_only=True, help_text="The secret. Shown only in this response.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "key"]


@extend_schema_view(
    list=extend_schema(summary="Your API tokens (never their keys)"),
    retrieve=extend_schema(summary="One of your API tokens", responses={200: ApiTokenSerializer, 404: DetailSerializer}),
    create=extend_schema(
        summary="Create a token; its key is in this response only",
        description="Needs a logged-in browser session: a token cannot mint more tokens.",
        request=ApiTokenSerializer,
        responses={201: NewApiTokenSerializer,
                   400: OpenApiResponse(OpenApiTypes.OBJECT, description="invalid name or expiry, by field"),
                   403: DetailSerializer},
    ),
    destroy=extend_schema(summary="Revoke a token: it stops working at once",
                          responses={204: None, 404: DetailSerializer}),
)
class ApiTokenViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = ApiTokenSerializer
    pagination_class = None  # a person has a handful of tokens
    lookup_value_converter = "int"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular reading the types
            return ApiToken.objects.none()
        # Only the caller's tokens exist for them: anyone else's id is a 404.
        return ApiToken.objects.filter(user=self.request.user)

    def create(self, request, *args, **kwargs):
        if isinstance(request.auth, ApiToken):
            # A stolen token must not be able to make itself a successor that
            # outlives its revocation.
            raise PermissionDenied(
                "API tokens can only be created from a logged-in session (the Tokens page) "
                "or with `manage.py create_api_token`"
            )
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token, key = ApiToken.objects.issue(
            request.user, serializer.validated_data["name"], serializer.validated_data.get("expires_at")
        )
        token.key = key
        return Response(NewApiTokenSerializer(token).data, status=status.HTTP_201_CREATED)
