from django.urls import include, path
from rest_framework.routers import SimpleRouter

from webapp.security import api

# A SimpleRouter: the jobs app's DefaultRouter already answers /api/ itself.
router = SimpleRouter(use_regex_path=False)
router.register("tokens", api.ApiTokenViewSet, basename="api-token")

urlpatterns = [
    path("api/", include(router.urls)),
]
