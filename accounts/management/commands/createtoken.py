from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounts.models import Account, ApiToken, Membership


class Command(BaseCommand):
    help = "Create an API token for USER in ACCOUNT_ID and print it (it is shown only this once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", required=True, metavar="ACCOUNT_ID")
        parser.add_argument("--user", required=True, metavar="USERNAME")
        parser.add_argument("--name", default="cli")
        parser.add_argument("--expires-in-days", type=int, default=None)

    def handle(self, *args, account: str, user: str, name: str, expires_in_days: int | None, **options) -> str:
        account_obj = Account.objects.filter(pk=account).first()
        if account_obj is None:
            raise CommandError(f"No account with id {account!r}.")
        user_obj = get_user_model().objects.filter(username=user).first()
        if user_obj is None:
            raise CommandError(f"No user named {user!r}.")
        if not Membership.objects.filter(user=user_obj, account=account_obj).exists():
            raise CommandError(f"{user} is not a member of account {account}.")
        if expires_in_days is not None and expires_in_days <= 0:
            raise CommandError("--expires-in-days must be a positive number.")
        expires_on = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
        _, plaintext = ApiToken.issue(user_obj, account_obj, name, expires_on=expires_on)
        return plaintext
