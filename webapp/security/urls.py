from django.urls import include, path
from rest_framework.routers import SimpleRouter

from webapp.security import api, views

# A SimpleRouter: the jobs app's DefaultRouter already answers /api/ itself.
router = SimpleRouter(use_regex_path=False)
router.register("tokens", api.ApiTokenViewSet, basename="api-token")

urlpatterns = [
    path("settings/tokens/", views.token_list, name="token-list"),
    path("settings/tokens/<int:token_id>/revoke", views.token_revoke, name="token-revoke"),
    path("api/", include(router.urls)),
]
