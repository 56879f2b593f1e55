"""Every URL in the URLconf, walked as alice against bob's objects, and as nobody.

The list of URLs comes from the URLconf itself, so a new route is walked the
day it is added: if it shows or changes bob's things to alice, or lets an
anonymous caller in, or takes an id this walk does not know how to fill, a
test here fails until someone decides what the route should do.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import URLResolver, get_resolver, path
from django.utils.regex_helper import normalize

from webapp.jobs.models import Item, Job, Outcome, record_outcomes
from webapp.security.models import ApiToken
from tests.images import image_bytes, upload

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete")

# Reachable without logging in, on purpose. Each one shows no one's data.
PUBLIC = {
    None: "the root only redirects to the job list (which asks for a login)",
    "signup": "making an account is for people who have none",
    "login": "the login form",
    "logout": "logging out needs no login (and only takes POST)",
    "admin:login": "the admin's login form",
    "admin:logout": "logging out needs no permission",
    "api-schema": "describes the API, holds no data",
    "api-docs": "Swagger UI for the schema, from our own static files",
}

# URL parameters that name one user's object: alice must never reach bob's.
OWNED_PARAMETERS = {"job_id", "item_id", "token_id", "pk"}


@dataclass(frozen=True)
class Route:
    format: str  # "/jobs/%(job_id)s/"
    name: str | None
    parameters: tuple[str, ...]

    @property
    def is_admin(self) -> bool:
        return self.format.startswith("/admin/")

    @property
    def is_api(self) -> bool:
        return self.format.startswith("/api/")


def routes(urlconf=None) -> list[Route]:
    """Every pattern in the URLconf as a URL format with its parameters."""

    def walk(patterns, prefix, namespace):
        for pattern in patterns:
            fmt, parameters = normalize(pattern.pattern.regex.pattern)[0]
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + fmt, pattern.namespace or namespace)
            else:
                name = f"{namespace}:{pattern.name}" if namespace and pattern.name else pattern.name
                yield Route("/" + prefix + fmt, name, tuple(parameters))

    return list(walk(get_resolver(urlconf).url_patterns, "", None))


@dataclass
class World:
    alice_job: Job
    bob_job: Job
    bob_item: Item
    bob_token: ApiToken
    bob: object
    secrets: tuple[str, ...]  # strings only bob's data contains

    def fill(self, route: Route, *, existing: bool = True) -> str:
        """The route's URL with bob's objects (or, with existing=False, ids no one has)."""
        ghost_job, ghost_int = uuid.uuid4(), 987654321
        owned = {
            "job_id": self.bob_job.pk if existing else ghost_job,
            "item_id": self.bob_item.pk if existing else ghost_int,
            "token_id": self.bob_token.pk if existing else ghost_int,
        }
        if route.name and route.name.startswith("api-job-"):
            owned["pk"] = owned["job_id"]
        elif route.name and route.name.startswith("api-token-"):
            owned["pk"] = self.bob_token.pk if existing else ghost_int
        admin_objects = {
            "/admin/jobs/job/": self.bob_job.pk, "/admin/jobs/item/": self.bob_item.pk,
            "/admin/security/apitoken/": self.bob_token.pk, "/admin/auth/user/": self.bob.pk,
        }  # fmt: skip
        admin_object = next((pk for prefix, pk in admin_objects.items() if route.format.startswith(prefix)), 1)
        other = {
            "object_id": admin_object, "id": self.bob.pk,
            "content_type_id": ContentType.objects.get_for_model(Job).pk,
            "app_label": "jobs", "url": "jobs/job/unknown",
            "uidb64": "Mg", "token": "set-password",
        }  # fmt: skip
        values = {**other, **owned}
        unknown = set(route.parameters) - set(values)
        if unknown:
            raise KeyError(
                f"{route.format} takes {', '.join(sorted(unknown))}: teach tests/test_ownership.py whose object "
                "that names, and make the view look it up with the owner"
            )
        if route.is_admin and "content_type_id" in route.parameters:
            values["object_id"] = self.bob_job.pk
        return route.format % {name: values[name] for name in route.parameters}


@pytest.fixture
def world(alice, bob, media_root) -> World:
    alice_job = Job.objects.create(owner=alice, model_name="efficientnet-lite0", total=0)
    bob_job = Job.objects.create(owner=bob, model_name="efficientnet-lite0", total=1)
    name = default_storage.save(f"uploads/{bob_job.pk}/b0b.png", upload("b.png", image_bytes()))
    thumb = default_storage.save(f"thumbs/{bob_job.pk}/1.jpg", upload("t.jpg", b"\xff\xd8bob"))
    item = Item.objects.create(job=bob_job, filename="bob-private-holiday.png", file=name, sha256="b" * 64)
    predictions = [{"label": "bobsleigh", "class_index": 450, "score": 0.9}] * 5
    record_outcomes([Outcome(item.pk, bob_job.pk, predictions=predictions, thumbnail=thumb)])
    bob_token, _ = ApiToken.objects.issue(bob, "bob-laptop-token")
    bob_job.refresh_from_db()
    return World(alice_job, bob_job, item, bob_token, bob,
                 secrets=(str(bob_job.pk), "bob-private-holiday", "bob-laptop-token", bob_token.prefix))  # fmt: skip


def body_of(response) -> str:
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return content.decode(errors="replace")


def redirects_to(response, login_path: str) -> bool:
    return response.status_code == 302 and response["Location"].startswith(login_path)


def guarded_routes(world: World, urlconf, problems: list[str]):
    """Every non-public route with bob's ids filled in; a route it cannot fill is a problem."""
    for route in routes(urlconf):
        if route.name in PUBLIC:
            continue
        try:
            yield route, world.fill(route)
        except KeyError as error:
            problems.append(str(error.args[0]))


def audit_as_alice(world: World, client: Client, urlconf=None) -> list[str]:
    """What alice can see or do to bob's things; [] when nothing."""
    problems = []
    for route, url in guarded_routes(world, urlconf, problems):
        owned = bool(OWNED_PARAMETERS & set(route.parameters))
        for method in METHODS:
            response = getattr(client, method)(url)
            seen = f"{method.upper()} {url} as alice: {response.status_code}"
            if response.status_code >= 500:
                problems.append(f"{seen} (server error)")
            elif any(secret in body_of(response) for secret in world.secrets):
                problems.append(f"{seen} shows bob's data")
            elif route.is_admin:
                # alice is not staff: every admin URL sends her to the admin login.
                if not redirects_to(response, "/admin/login/"):
                    problems.append(f"{seen}, expected a redirect to the admin login")
            elif owned:
                # 404: bob's object does not exist for alice. 405: the route does
                # not take this method at all, decided before any lookup, so it
                # tells alice nothing about bob's object either.
                ghost = getattr(client, method)(world.fill(route, existing=False)).status_code
                if response.status_code not in (404, 405) or response.status_code != ghost:
                    problems.append(f"{seen}, expected 404 or 405, the same as for an id no one has ({ghost})")
    return problems


def audit_anonymous(world: World, urlconf=None) -> list[str]:
    """What a caller with no login or token gets; [] when every door asks for one."""
    problems = []
    anonymous = Client(raise_request_exception=False)
    for route, url in guarded_routes(world, urlconf, problems):
        for method in METHODS:
            response = getattr(anonymous, method)(url)
            seen = f"{method.upper()} {url} anonymously: {response.status_code}"
            if route.is_admin:
                ok = redirects_to(response, "/admin/login/")
            elif route.is_api:
                ok = response.status_code in (401, 403)
            else:
                ok = redirects_to(response, "/accounts/login/")
            if not ok:
                problems.append(f"{seen}, expected {'401/403' if route.is_api else 'a redirect to the login'}")
    return problems


def alice_client(alice) -> Client:
    # Logged in and holding a token: pages by session, API by token. No CSRF
    # enforcement, so that what answers is the owner check, not the CSRF check.
    client = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Token {ApiToken.objects.issue(alice, 'walk')[1]}")
    client.force_login(alice)
    return client


def test_every_url_keeps_bobs_objects_from_alice(world, alice, media_root):
    problems = audit_as_alice(world, alice_client(alice))
    assert problems == [], "\n".join(problems)
    # And nothing of bob's was changed by all those POSTs and DELETEs.
    bob_job = Job.objects.get(pk=world.bob_job.pk)
    assert (bob_job.status, bob_job.succeeded_count) == ("done", 1)
    assert ApiToken.objects.filter(pk=world.bob_token.pk).exists()
    assert Item.objects.filter(pk=world.bob_item.pk, status="succeeded").exists()
    assert (media_root / world.bob_item.file.name).exists()
    assert (media_root / "thumbs" / str(world.bob_job.pk) / "1.jpg").exists()


def test_every_url_asks_anonymous_callers_to_log_in(world):
    problems = audit_anonymous(world)
    assert problems == [], "\n".join(problems)


def test_the_walk_covers_the_routes_that_matter():
    names = {route.name for route in routes()}
    assert {"job-detail", "job-delete", "job-cancel", "job-retry-failed", "item-image", "item-thumbnail",
            "job-results-csv", "token-revoke", "api-job-detail", "api-job-cancel", "api-job-results", "api-token-detail",
            "admin:jobs_job_change"} <= names  # fmt: skip
    # The public list names only routes that exist: no stale exceptions.
    assert set(PUBLIC) <= names


# --- The walk catches what it is for -----------------------------------------
# A URLconf with the real routes plus two mistakes someone could make.


def leaky_job_view(request, job_id):
    from django.contrib.auth.decorators import login_required
    from django.http import JsonResponse

    @login_required
    def view(request, job_id):
        job = Job.objects.get(pk=job_id)  # no owner in the lookup: the mistake
        return JsonResponse({"id": str(job.pk)})

    return view(request, job_id)


def open_view(request):
    from django.http import HttpResponse

    return HttpResponse("no login needed")  # no login_required: the other mistake


urlpatterns = [
    path("leaky/<uuid:job_id>/", leaky_job_view, name="leaky-job"),
    path("open/", open_view, name="open"),
    path("", __import__("django.urls", fromlist=["include"]).include("webapp.urls")),
]


def test_the_walk_fails_on_a_route_without_an_owner_check(world, alice, settings):
    settings.ROOT_URLCONF = __name__
    problems = audit_as_alice(world, alice_client(alice), urlconf=__name__)
    assert any(p.startswith(f"GET /leaky/{world.bob_job.pk}/ as alice: 200") for p in problems), problems


def test_the_walk_fails_on_a_route_without_a_login(world, settings):
    settings.ROOT_URLCONF = __name__
    problems = audit_anonymous(world, urlconf=__name__)
    assert "GET /open/ anonymously: 200, expected a redirect to the login" in problems, problems
