"""Who is calling: a bearer API token (scripts) or the dashboard's session (the browser,
with Django's CSRF check on unsafe methods, done by DRF's SessionAuthentication)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from accounts.models import ApiToken
from builds.api.envelope import INVALID_TOKEN


class BearerTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <token>`. request.user is the token's user and
    request.auth the ApiToken, which is valid only for its own account."""

    def authenticate(self, request: Request) -> tuple | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, credentials = header.partition(" ")
        token = ApiToken.authenticate(credentials.strip()) if scheme.lower() == "bearer" else None
        if token is None:
            raise AuthenticationFailed(INVALID_TOKEN)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) when no credentials came.
        return 'Bearer realm="api"'


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = BearerTokenAuthentication
    name = "apiToken"

    def get_security_definition(self, auto_schema) -> dict:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token of one user in one account (manage.py createtoken). "
            "It works only under /client/v4/accounts/<its account id>/.",
        }
