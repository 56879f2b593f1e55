"""Query parameters read by hand: any value is a 200 or a clear 4xx, never a 500."""

from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import make_job
from webapp.jobs.params import MAX_ID, id_list, whole_number

pytestmark = pytest.mark.django_db

HUGE = "99999999999999999999999"
# Past Python's 4300-digit limit int() refuses the string outright.
ENORMOUS = "9" * 5000
# What a person or a fuzzer types: digits of every script, signs, spaces, huge numbers.
ODD_VALUES = st.one_of(
    st.text(max_size=30),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["²", "١٢", "٣", "1e9", "0x10", " 1", "1 ", "+1", "-0", "0", "00", "1.0", "nan", HUGE, ENORMOUS]),
)
FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip


@pytest.fixture
def job_of_alice(client, alice):
    client.force_login(alice)
    return make_job(alice, {"a.png": ("espresso", 0.9), "b.png": None})


def test_whole_number_takes_ascii_digits_within_bounds_only():
    assert [whole_number(raw) for raw in ("1", "007", str(MAX_ID))] == [1, 7, MAX_ID]
    # Superscripts and other scripts' digits, signs, zero, blanks and numbers past a bigint are not whole numbers here.
    for raw in ("²", "٣", "-1", "+1", "0", "000", "", " 1", "1.0", str(MAX_ID + 1), HUGE, ENORMOUS):
        assert whole_number(raw) is None, raw
    # Clamped instead where a parameter says "more than N gives N".
    assert whole_number(HUGE, highest=500, clamp=True) == 500
    assert whole_number(ENORMOUS, highest=500, clamp=True) == 500


def test_id_list_names_the_first_bad_entry():
    assert id_list("3, 1,,2,", most=60) == [3, 1, 2]
    assert id_list("1,2,3,4", most=2) == [1, 2]
    with pytest.raises(ValueError, match="'²' is not an item id"):
        id_list("1,²", most=60)


@pytest.mark.parametrize("items", ["²", HUGE, ENORMOUS, "-1", "x", "1,²"])
def test_progress_refuses_a_malformed_item_id_with_a_400(client, job_of_alice, items):
    response = client.get(f"/jobs/{job_of_alice.pk}/progress?items={quote(items)}")
    # A clear 400 that names the parameter, not a 500.
    assert response.status_code == 400
    assert response.json()["detail"].startswith("items: ")
    assert "is not an item id" in response.json()["detail"]


def test_progress_still_answers_for_ids_that_are_not_in_the_job(client, job_of_alice):
    a, b = job_of_alice.items.order_by("pk")
    data = client.get(f"/jobs/{job_of_alice.pk}/progress?items={a.pk},{MAX_ID},{b.pk},").json()
    assert [entry["id"] for entry in data["items"]] == [a.pk, b.pk]


@FUZZ
@given(value=ODD_VALUES)
def test_progress_items_never_500(client, job_of_alice, value):
    response = client.get(f"/jobs/{job_of_alice.pk}/progress", {"items": value})
    assert response.status_code in (200, 400), (value, response.status_code)


@FUZZ
@given(value=ODD_VALUES)
def test_page_numbers_on_pages_never_500(client, job_of_alice, value):
    # Django's Paginator.get_page: a malformed page is the first, one past the end the last.
    for url in ("/jobs/", f"/jobs/{job_of_alice.pk}/", "/search/?q=espresso"):
        response = client.get(url, {"page": value})
        assert response.status_code == 200, (url, value)


@FUZZ
@given(value=ODD_VALUES)
def test_status_filter_and_search_never_500(client, job_of_alice, value):
    assert client.get("/jobs/", {"status": value}).status_code == 200
    assert client.get("/search/", {"q": value}).status_code == 200


def test_search_drops_nul_characters(client, job_of_alice):
    # PostgreSQL refuses NUL inside a query string; it can never match a label anyway.
    response = client.get("/search/", {"q": "espr\x00esso"})
    assert response.status_code == 200
    assert response.context["query"] == "espresso"
    assert len(response.context["items"]) == 1


@FUZZ
@given(page=ODD_VALUES, size=ODD_VALUES)
def test_api_pagination_is_a_400_or_a_page_never_a_500(api_as, alice, page, size):
    api = api_as(alice)
    response = api.get("/api/jobs/", {"page": page, "page_size": size})
    assert response.status_code in (200, 400, 404), (page, size, response.status_code)
    if response.status_code != 200:
        assert "json" in response["Content-Type"]


def test_api_page_size_above_the_limit_gives_the_limit_however_large(api_as, alice):
    make_job(alice, {"a.png": None})
    api = api_as(alice)
    for size in ("501", HUGE, ENORMOUS):
        assert api.get("/api/jobs/", {"page_size": size}).status_code == 200, size
    # A page far past the end is "no such page", a malformed one a 400 naming it.
    assert api.get("/api/jobs/", {"page": HUGE}).status_code == 400
    assert api.get("/api/jobs/", {"page": str(MAX_ID)}).status_code == 404
    assert api.get("/api/jobs/", {"page": "²"}).json() == {"page": ["a whole number from 1"]}
