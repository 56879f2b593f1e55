from django.urls import include, path
from django.views.generic import RedirectView
from rest_framework.routers import DefaultRouter

from webapp.jobs import api, views

# Path converters instead of regexes: a malformed id never reaches a view.
router = DefaultRouter(use_regex_path=False)
# JSON only: no /api/jobs.json twins of every route to secure and document.
router.include_format_suffixes = False
router.register("jobs", api.JobViewSet, basename="api-job")

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="job-list", permanent=False)),
    path("upload/", views.upload, name="upload"),
    path("jobs/", views.job_list, name="job-list"),
    path("jobs/<uuid:job_id>/", views.job_detail, name="job-detail"),
    path("jobs/<uuid:job_id>/progress", views.job_progress, name="job-progress"),
    path("jobs/<uuid:job_id>/cancel", views.job_cancel, name="job-cancel"),
    path("jobs/<uuid:job_id>/delete", views.job_delete, name="job-delete"),
    path("jobs/<uuid:job_id>/retry-failed", views.job_retry_failed, name="job-retry-failed"),
    path("jobs/<uuid:job_id>/results.csv", views.job_results_csv, name="job-results-csv"),
    path("jobs/<uuid:job_id>/results.json", views.job_results_json, name="job-results-json"),
    path("jobs/<uuid:job_id>/items/<int:item_id>/", views.item_detail, name="item-detail"),
    path("jobs/<uuid:job_id>/items/<int:item_id>/image", views.item_image, name="item-image"),
    path("jobs/<uuid:job_id>/items/<int:item_id>/thumbnail", views.item_thumbnail, name="item-thumbnail"),
    path("search/", views.search, name="search"),
    path("api/", include(router.urls)),
]
