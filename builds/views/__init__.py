"""The dashboard: server-rendered pages, each scoped to an account the user belongs to
(its id is in the URL; any other account is a 404), with live updates over websockets.

`pages` shows workers and builds and starts, cancels and retries them; `configure` holds
the settings pages; `badge` serves the public status badge."""

import time

from django.http import HttpRequest

from accounts.models import Membership
from accounts.permissions import Action, allowed_actions, membership_or_404


def member(request: HttpRequest, account_id: str, action: Action = Action.VIEW) -> Membership:
    """The request's membership in the account (404 or 403 otherwise), remembered as the
    account the user last worked in."""
    membership = membership_or_404(request.user, account_id, action)
    request.session["account_id"] = membership.account_id
    return membership


def page_context(membership: Membership, **extra) -> dict:
    return {
        "account": membership.account,
        "membership": membership,
        "allowed": allowed_actions(membership),
        # Lets the page's account socket replay changes since it was rendered.
        "rendered_at": f"{time.time():.3f}",
        **extra,
    }
