"""Logging in, choosing an account, members and roles, API tokens."""

import pytest

from accounts.models import ApiToken, Membership, Role
from tests.factories import add_member, make_account, make_user


def url(account, *parts) -> str:
    return "/".join(["", "accounts", account.id, *map(str, parts), ""])


def test_login_logout_and_landing_in_the_only_account(client, account, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    make_user("erin", "correct horse")
    add_member(get_user("erin"), account, Role.DEVELOPER)
    response = client.post("/login/", {"username": "erin", "password": "wrong"})
    assert response.status_code == 200 and "did not match" in response.content.decode()
    response = client.post("/login/", {"username": "erin", "password": "correct horse"}, follow=True)
    assert response.redirect_chain[-1][0] == url(account)
    assert client.post("/logout/").status_code == 302
    assert client.get(url(account))["Location"].startswith("/login/")


def get_user(username: str):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username=username)


def test_a_user_in_several_accounts_chooses_and_switches(client, owner, account):
    second = make_account("Second", owner=owner)
    client.force_login(owner)
    body = client.get("/").content.decode()
    assert "Acme" in body and "Second" in body
    page = client.get(url(second)).content.decode()
    assert 'class="switcher"' in page and url(account) in page  # the switcher offers the other account
    # The account last worked in is where the next visit lands.
    assert client.get("/")["Location"] == url(second)


def test_a_user_without_an_account_is_told_so(client, outsider):
    Membership.objects.filter(user=outsider).delete()
    client.force_login(outsider)
    assert "You are not a member of any account." in client.get("/").content.decode()


def test_admins_add_members_and_change_roles_below_owner(client, account, member):
    admin = make_user("ada")
    add_member(admin, account, Role.ADMIN)
    newcomer = make_user("nina")
    client.force_login(admin)
    response = client.post(url(account, "members"), {"user": "nina@example.com", "role": Role.READ_ONLY})
    assert response.status_code == 302
    assert Membership.objects.get(user=newcomer, account=account).role == Role.READ_ONLY
    target = Membership.objects.get(user=member, account=account)
    client.post(url(account, "members", target.pk, "role"), {"role": Role.ADMIN})
    target.refresh_from_db()
    assert target.role == Role.ADMIN
    # Granting or taking away the owner role is for owners.
    assert client.post(url(account, "members", target.pk, "role"), {"role": Role.OWNER}).status_code == 403
    owner_membership = Membership.objects.get(account=account, role=Role.OWNER)
    assert client.post(url(account, "members", owner_membership.pk, "remove")).status_code == 403
    target.refresh_from_db()
    assert target.role == Role.ADMIN and Membership.objects.filter(pk=owner_membership.pk).exists()


def test_adding_an_unknown_or_existing_member_is_an_inline_error(client, owner, account, member):
    client.force_login(owner)
    response = client.post(url(account, "members"), {"user": "nobody", "role": Role.DEVELOPER})
    assert response.status_code == 400 and "No active user has this username or email." in response.content.decode()
    response = client.post(url(account, "members"), {"user": "bob", "role": Role.DEVELOPER})
    assert "This user is a member already." in response.content.decode()
    assert account.memberships.count() == 2


def test_the_last_owner_stays(client, owner, account):
    client.force_login(owner)
    mine = Membership.objects.get(user=owner, account=account)
    response = client.post(url(account, "members", mine.pk, "role"), {"role": Role.ADMIN}, follow=True)
    assert "An account needs an owner" in response.content.decode()
    mine.refresh_from_db()
    assert mine.role == Role.OWNER


def test_developers_cannot_manage_members(client, member, account, outsider):
    client.force_login(member)
    page = client.get(url(account, "members")).content.decode()
    assert "Add a member" not in page
    assert client.post(url(account, "members"), {"user": "charlie", "role": Role.DEVELOPER}).status_code == 403
    assert not Membership.objects.filter(user=outsider, account=account).exists()


def test_a_token_is_shown_once_and_can_be_revoked(client, member, account):
    client.force_login(member)
    response = client.post(url(account, "tokens"), {"name": "deploy script", "expires_in_days": "30"})
    token = ApiToken.objects.get()
    plaintext = response.content.decode().split("data-new-token")[0].rsplit('value="', 1)[1].split('"')[0]
    assert response.status_code == 201 and ApiToken.authenticate(plaintext) == token
    assert token.user == member and token.expires_on is not None
    assert plaintext not in client.get(url(account, "tokens")).content.decode()
    client.post(url(account, "tokens", token.pk, "revoke"))
    assert ApiToken.authenticate(plaintext) is None


def test_members_see_only_their_own_tokens_unless_they_manage_members(client, owner, member, account):
    owners_token, _ = ApiToken.issue(owner, account, "owner-ci")
    ApiToken.issue(member, account, "bob-laptop")
    client.force_login(member)
    page = client.get(url(account, "tokens")).content.decode()
    assert "bob-laptop" in page and "owner-ci" not in page
    assert client.post(url(account, "tokens", owners_token.pk, "revoke")).status_code == 404
    owners_token.refresh_from_db()
    assert owners_token.is_active
    client.force_login(owner)
    page = client.get(url(account, "tokens")).content.decode()
    assert "bob-laptop" in page and "owner-ci" in page


@pytest.mark.parametrize("path", ["members", "tokens"])
def test_account_pages_of_another_account_are_404(client, outsider, account, path):
    client.force_login(outsider)
    assert client.get(url(account, path)).status_code == 404
