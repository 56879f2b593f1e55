"""`Authorization: Token <key>` against hashed, expiring, revocable API tokens."""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from webapp.security.models import ApiToken


class ApiTokenAuthentication(TokenAuthentication):
    """DRF's header parsing and 401 challenge, with our ApiToken as the store.

    request.auth is the ApiToken, so views can tell a token call from a
    browser session.
    """

    keyword = "Token"

    def authenticate_credentials(self, key: str):
        token = ApiToken.objects.for_key(key)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if token.is_expired():
            raise exceptions.AuthenticationFailed("This token has expired; create a new one.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        token.touch()
        return token.user, token
