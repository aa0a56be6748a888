"""The view every API endpoint is: authenticated by token or session, scoped to the
URL's account, role-checked, rate-limited, JSON in and the envelope out."""

from functools import cached_property

from django.db.models import QuerySet
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotFound
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer

from accounts.models import Account, ApiToken
from accounts.permissions import Action, can
from builds.api.authentication import BearerTokenAuthentication
from builds.api.envelope import ok, page_info
from builds.api.permissions import AccountRole, TokenRateThrottle
from builds.api.serializers import PageQuery
from builds.models import BuildSource

UNSAFE_METHODS = ("post", "put", "patch", "delete")


class AccountAPIView(GenericAPIView):
    authentication_classes = [BearerTokenAuthentication, SessionAuthentication]
    permission_classes = [AccountRole]
    throttle_classes = [TokenRateThrottle]
    parser_classes = [JSONParser]
    renderer_classes = [JSONRenderer]
    # No OPTIONS metadata: it would be the one answer outside the envelope (405 instead).
    metadata_class = None
    # The action each unsafe method needs; reads need Action.VIEW.
    actions: dict[str, Action] = {}

    def __init_subclass__(cls, **kwargs) -> None:
        # A handler that forgot its action would be open to every member who can view.
        super().__init_subclass__(**kwargs)
        for method in UNSAFE_METHODS:
            if hasattr(cls, method) and method.upper() not in cls.actions:
                raise TypeError(f"{cls.__name__}.{method} has no entry in {cls.__name__}.actions")

    def required_action(self, request: Request) -> Action:
        return self.actions.get(request.method, Action.VIEW)

    @property
    def acts_on_object(self) -> bool:
        """Under one object's URL: the role is checked once the object is found."""
        return self.lookup_url_kwarg is not None

    @cached_property
    def account(self) -> Account:
        """The URL's account, if the caller is a member and (with a token) it is the
        token's account; otherwise a 404, never a 403 that confirms it exists."""
        account_id = self.kwargs["account_id"]
        user = self.request.user
        token = self.request.auth
        if isinstance(token, ApiToken) and token.account_id != account_id:
            raise NotFound("No such account.")
        if not can(user, account_id, Action.VIEW):
            raise NotFound("No such account.")
        return Account.objects.get(pk=account_id, memberships__user=user)

    @cached_property
    def reveal_secrets(self) -> bool:
        """Webhook secrets and deploy hook URLs are shown only to those who manage them."""
        return can(self.request.user, self.account, Action.CONFIGURE)

    def get_serializer_context(self) -> dict:
        return {**super().get_serializer_context(), "account": self.account, "reveal_secrets": self.reveal_secrets}

    def build_source(self) -> str:
        """Builds started with a token come from the API; from the dashboard, by hand."""
        return BuildSource.API if isinstance(self.request.auth, ApiToken) else BuildSource.MANUAL

    def query(self, serializer_class: type[Serializer]) -> dict:
        """The validated query parameters; a 400 naming the parameter otherwise."""
        serializer = serializer_class(data=self.request.query_params)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def body(self, serializer_class: type[Serializer], instance=None, **kwargs) -> Serializer:
        serializer = serializer_class(instance, data=self.request.data, context=self.get_serializer_context(), **kwargs)
        serializer.is_valid(raise_exception=True)
        return serializer

    def output(self, serializer_class: type[Serializer], instance, **kwargs) -> dict:
        return serializer_class(instance, context=self.get_serializer_context(), **kwargs).data

    def paginated(self, queryset: QuerySet, serializer_class: type[Serializer], query: dict | None = None) -> Response:
        query = query or self.query(PageQuery)
        page, per_page = query["page"], query["per_page"]
        total = queryset.count()
        items = queryset[(page - 1) * per_page : page * per_page]
        data = self.output(serializer_class, items, many=True)
        return ok(data, result_info=page_info(page=page, per_page=per_page, count=len(data), total_count=total))
