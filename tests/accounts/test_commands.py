from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import Account, ApiToken, Membership, Role


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue().strip()


@pytest.mark.django_db
def test_createaccount_creates_owner_and_prints_id():
    account_id = run("createaccount", "Acme", "--owner", "alice", "--email", "alice@example.com")
    account = Account.objects.get(pk=account_id)
    assert len(account_id) == 32 and account.name == "Acme"
    membership = Membership.objects.get(account=account)
    assert membership.user.username == "alice" and membership.role == Role.OWNER
    assert membership.user.email == "alice@example.com"


@pytest.mark.django_db
def test_createaccount_reuses_existing_user(owner):
    run("createaccount", "Second", "--owner", owner.username)
    assert get_user_model().objects.filter(username=owner.username).count() == 1
    assert Membership.objects.filter(user=owner).count() == 1


@pytest.mark.django_db
def test_createaccount_rejects_bad_username_and_creates_nothing():
    with pytest.raises(CommandError, match="Invalid username"):
        run("createaccount", "Acme", "--owner", "no spaces allowed!")
    assert not Account.objects.exists()
    assert not get_user_model().objects.exists()


def test_createtoken_prints_a_working_token(account, owner):
    plaintext = run("createtoken", "--account", account.id, "--user", owner.username, "--name", "deploy")
    token = ApiToken.authenticate(plaintext)
    assert token is not None and token.name == "deploy" and token.account == account


@pytest.mark.parametrize(
    "args, message",
    [
        (["--account", "0" * 32, "--user", "alice"], "No account"),
        (["--user", "nobody"], "No user"),
        (["--user", "charlie"], "not a member"),
        (["--user", "alice", "--expires-in-days", "0"], "positive"),
    ],
)
def test_createtoken_rejects_bad_arguments_and_creates_nothing(account, outsider, args, message):
    if "--account" not in args:
        args = ["--account", account.id, *args]
    with pytest.raises(CommandError, match=message):
        run("createtoken", *args)
    assert not ApiToken.objects.exists()


def test_commands_exit_non_zero_from_the_shell(tmp_path):
    import subprocess
    import sys

    from django.conf import settings

    env = {"PATH": "/usr/bin:/bin", "BUILDSITE_DATA_DIR": str(tmp_path)}
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], cwd=settings.BASE_DIR, env=env, check=True)
    result = subprocess.run(
        [*manage, "createtoken", "--account", "nope", "--user", "nobody"],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode != 0
    assert "No account with id 'nope'" in result.stderr
