from django.urls import include, path
from django.views.generic import RedirectView
from rest_framework.routers import DefaultRouter

from webapp.jobs import api, views

router = DefaultRouter()
router.register("jobs", api.JobViewSet, basename="api-job")

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="job-list", permanent=False)),
    path("jobs/", views.job_list, name="job-list"),
    path("jobs/<uuid:job_id>/", views.job_detail, name="job-detail"),
    path("jobs/<uuid:job_id>/items/<int:item_id>/image", views.item_image, name="item-image"),
    path("jobs/<uuid:job_id>/items/<int:item_id>/thumbnail", views.item_thumbnail, name="item-thumbnail"),
    path("api/", include(router.urls)),
]
