import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import Account, ApiToken, Membership, Role

DEMO_USERNAME = "demo"


class Command(BaseCommand):
    help = "On a fresh install, create a demo user, account and API token and print them."

    def handle(self, *args, **options) -> None:
        User = get_user_model()
        if User.objects.exists():
            self.stdout.write(
                "Accounts exist already; demo login and token were printed when they were created "
                f"(reset the password with: manage.py changepassword {DEMO_USERNAME})."
            )
            return
        password = secrets.token_urlsafe(12)
        with transaction.atomic():
            user = User.objects.create_superuser(DEMO_USERNAME, "", password)
            account = Account.objects.create(name="Demo")
            Membership.objects.create(user=user, account=account, role=Role.OWNER)
            _, token = ApiToken.issue(user, account, "demo")
        self.stdout.write(
            f"Demo login:   {DEMO_USERNAME} / {password}\n"
            f"Demo account: {account.id}\n"
            f"Demo token:   {token}  (shown once)"
        )
