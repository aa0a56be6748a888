"""May this caller do this here: account membership (another account is a 404), the
role's action (accounts.permissions.can, a 403), and the per-token rate limit."""

import logging

from django.conf import settings
from redis import RedisError
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from accounts.models import ApiToken
from accounts.permissions import can

log = logging.getLogger(__name__)


class AccountRole(BasePermission):
    """The caller's role in the URL's account allows the view's action for this method.

    Finding the account (view.account) is a 404 for a non-member or a token of another
    account. A view under one object's URL checks the role only after finding that
    object in the account, so an id from another account is a 404 before any 403."""

    message = "Your role in this account does not allow this."

    def has_permission(self, request: Request, view) -> bool:
        if not request.user.is_authenticated:
            return False
        account = view.account
        if view.acts_on_object:
            return True
        return can(request.user, account, view.required_action(request))

    def has_object_permission(self, request: Request, view, obj) -> bool:
        return can(request.user, view.account, view.required_action(request))


class TokenRateThrottle(SimpleRateThrottle):
    """BUILDSITE_API_RATE requests per token (per user for the dashboard session),
    counted in the configured cache, so every web process shares the count."""

    scope = "api"

    def get_rate(self) -> str:
        return settings.BUILDSITE_API_RATE

    def allow_request(self, request: Request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except (RedisError, OSError):
            # The count lives in the cache (Redis in production). While it is down the
            # API still answers from the database, unlimited, rather than failing
            # every request, reading build logs included, with a 500.
            log.warning("API rate limit not applied: its cache cannot be reached", exc_info=True)
            return True

    def get_cache_key(self, request: Request, view) -> str:
        token = request.auth
        ident = f"token-{token.pk}" if isinstance(token, ApiToken) else f"user-{request.user.pk}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
