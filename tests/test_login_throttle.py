"""Login attempts are throttled per username and client address (django-axes)."""

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

# Documentation addresses (RFC 5737): only ever written into request.META.
HOME, ELSEWHERE = "192.0.2.10", "198.51.100.7"


def log_in(client: Client, username: str, password: str, address: str = HOME, **headers):
    return client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=address, **headers)


@pytest.fixture(autouse=True)
def failure_limit(settings):
    settings.AXES_FAILURE_LIMIT = 3
    return 3


def test_after_the_failure_limit_even_the_right_password_is_refused_with_429(alice):
    client = Client()
    for _ in range(2):
        again = log_in(client, "alice", "wrong")
        # The form again, with one error message, not two saying the same thing.
        assert again.status_code == 200
        assert again.content.decode().count('class="alert alert-error"') == 1
        assert "Please enter a correct username and password" in again.content.decode()
        assert "errorlist nonfield" not in again.content.decode()
    locked = log_in(client, "alice", "wrong")
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    assert int(locked["Retry-After"]) == 15 * 60

    right_password = log_in(client, "alice", "alice-secret-pw")
    assert right_password.status_code == 429
    assert "_auth_user_id" not in client.session


def test_the_lock_is_for_that_username_from_that_address_only(alice, bob):
    attacker = Client()
    for _ in range(3):
        log_in(attacker, "alice", "wrong")
    # bob, from the same address, and alice from elsewhere still log in.
    assert log_in(Client(), "bob", "bob-secret-pw").status_code == 302
    assert log_in(Client(), "alice", "alice-secret-pw", address=ELSEWHERE).status_code == 302


def test_a_successful_login_resets_the_count(alice):
    client = Client()
    log_in(client, "alice", "wrong")
    log_in(client, "alice", "wrong")
    assert log_in(client, "alice", "alice-secret-pw").status_code == 302
    for _ in range(2):
        assert log_in(Client(), "alice", "wrong").status_code == 200


def test_behind_a_trusted_proxy_the_forwarded_address_counts_and_cannot_be_spoofed(alice, settings):
    settings.VQ_TRUSTED_PROXIES = 1
    proxy = "127.0.0.1"
    for n in range(3):
        # The client writes a different fake address each time; the proxy appends the real one.
        forwarded = f"203.0.113.{n}, {HOME}"
        log_in(Client(), "alice", "wrong", address=proxy, HTTP_X_FORWARDED_FOR=forwarded)
    assert log_in(Client(), "alice", "alice-secret-pw", address=proxy, HTTP_X_FORWARDED_FOR=HOME).status_code == 429
    # Another real client behind the same proxy is not locked out.
    assert log_in(Client(), "alice", "alice-secret-pw", address=proxy, HTTP_X_FORWARDED_FOR=ELSEWHERE).status_code == 302


def test_the_admin_login_is_throttled_too(admin_user):
    client = Client()
    for _ in range(2):
        client.post("/admin/login/", {"username": "admin", "password": "wrong"}, REMOTE_ADDR=HOME)
    assert client.post("/admin/login/", {"username": "admin", "password": "wrong"}, REMOTE_ADDR=HOME).status_code == 429


def test_scripts_and_tests_without_a_request_can_still_authenticate(alice):
    # Django's test client.login() (and a shell) call authenticate() with no request.
    assert Client().login(username="alice", password="alice-secret-pw")
