"""The one answer to "may this user do X in this account", used by the dashboard, the
API and the websocket consumers alike."""

from enum import StrEnum

from django.core.exceptions import PermissionDenied
from django.http import Http404

from accounts.models import Account, Membership, Role


class Action(StrEnum):
    VIEW = "view"  # workers, triggers, builds, logs, deliveries
    BUILD = "build"  # start, cancel and retry builds
    CONFIGURE = "configure"  # workers, triggers, variables, repo connections, deploy hooks
    MANAGE_MEMBERS = "manage_members"  # members, roles below owner, API tokens of others
    MANAGE_OWNERS = "manage_owners"  # grant or remove the owner role, rename the account


ROLE_ACTIONS: dict[str, frozenset[Action]] = {
    Role.READ_ONLY: frozenset({Action.VIEW}),
    Role.DEVELOPER: frozenset({Action.VIEW, Action.BUILD}),
    Role.ADMIN: frozenset({Action.VIEW, Action.BUILD, Action.CONFIGURE, Action.MANAGE_MEMBERS}),
    Role.OWNER: frozenset(Action),
}


def membership_of(user, account: Account | str) -> Membership | None:
    """The user's membership in the account (given as object or id), or None."""
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    account_id = account.pk if isinstance(account, Account) else account
    return Membership.objects.select_related("account").filter(user=user, account_id=account_id).first()


def role_allows(role: str, action: Action) -> bool:
    return action in ROLE_ACTIONS.get(role, frozenset())


def can(user, account: Account | str, action: Action) -> bool:
    membership = membership_of(user, account)
    return membership is not None and role_allows(membership.role, action)


def membership_or_404(user, account_id: str, action: Action = Action.VIEW) -> Membership:
    """The user's membership when their role allows `action` in the account. A user who
    is not a member gets a 404, so a page never confirms that an account exists; a
    member whose role does not allow the action gets a 403."""
    membership = membership_of(user, account_id)
    if membership is None:
        raise Http404("No such account.")
    if not role_allows(membership.role, action):
        raise PermissionDenied(f"Your role does not allow this ({action}).")
    return membership


def allowed_actions(membership: Membership) -> dict[str, bool]:
    """{action: bool} for templates, so buttons are shown by the same rule that guards them."""
    return {action.value: role_allows(membership.role, action) for action in Action}
