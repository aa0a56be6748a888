import pytest

from accounts.models import Role
from accounts.permissions import Action, can, membership_of
from tests.factories import add_member, make_user

EXPECTED = {
    Role.READ_ONLY: {Action.VIEW},
    Role.DEVELOPER: {Action.VIEW, Action.BUILD},
    Role.ADMIN: {Action.VIEW, Action.BUILD, Action.CONFIGURE, Action.MANAGE_MEMBERS},
    Role.OWNER: set(Action),
}


@pytest.mark.parametrize("role", list(Role))
def test_each_role_may_do_exactly_its_actions(account, role):
    user = make_user()
    add_member(user, account, role)
    allowed = {action for action in Action if can(user, account, action)}
    assert allowed == EXPECTED[role]
    # The account may be named by id as well as by object.
    assert {action for action in Action if can(user, account.id, action)} == EXPECTED[role]


def test_outsider_may_do_nothing(account, outsider, other_account):
    assert membership_of(outsider, account) is None
    assert not any(can(outsider, account, action) for action in Action)
    assert can(outsider, other_account, Action.VIEW)


def test_anonymous_and_inactive_users_may_do_nothing(account, owner):
    from django.contrib.auth.models import AnonymousUser

    assert not can(AnonymousUser(), account, Action.VIEW)
    owner.is_active = False
    owner.save()
    assert not can(owner, account, Action.VIEW)
