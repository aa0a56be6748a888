from datetime import timedelta

from django.utils import timezone

from accounts.models import ApiToken, hash_token


def test_it_stores_only_the_hash(account, owner):
    token, plaintext = ApiToken.issue(owner, account, "ci")
    token.refresh_from_db()
    assert plaintext.startswith("bst_") and len(plaintext) > 40
    assert token.token_hash == hash_token(plaintext)
    assert plaintext not in {token.token_hash, token.prefix, token.name}
    assert plaintext.startswith(token.prefix)


def test_it_authenticates_and_records_use(account, owner):
    token, plaintext = ApiToken.issue(owner, account, "ci")
    found = ApiToken.authenticate(plaintext)
    assert found == token
    assert found.account == account and found.user == owner
    token.refresh_from_db()
    assert token.last_used_on is not None


def test_it_rejects_unknown_and_malformed_tokens(account, owner):
    _, plaintext = ApiToken.issue(owner, account, "ci")
    assert ApiToken.authenticate(plaintext + "x") is None
    assert ApiToken.authenticate(plaintext[4:]) is None
    assert ApiToken.authenticate("") is None


def test_revoked_token_stops_working(account, owner):
    token, plaintext = ApiToken.issue(owner, account, "ci")
    token.revoke()
    assert token.revoked_on is not None
    assert ApiToken.authenticate(plaintext) is None


def test_expired_token_stops_working(account, owner):
    _, fresh = ApiToken.issue(owner, account, "fresh", expires_on=timezone.now() + timedelta(minutes=5))
    _, stale = ApiToken.issue(owner, account, "stale", expires_on=timezone.now() - timedelta(seconds=1))
    assert ApiToken.authenticate(fresh) is not None
    assert ApiToken.authenticate(stale) is None


def test_token_of_a_deactivated_user_stops_working(account, owner):
    _, plaintext = ApiToken.issue(owner, account, "ci")
    owner.is_active = False
    owner.save()
    assert ApiToken.authenticate(plaintext) is None
