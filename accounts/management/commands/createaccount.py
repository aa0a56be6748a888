from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from accounts.models import Account, Membership, Role


class Command(BaseCommand):
    help = "Create an account owned by USERNAME (created if missing) and print the account id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--owner", required=True, metavar="USERNAME")
        parser.add_argument("--email", default="")

    def handle(self, *args, name: str, owner: str, email: str, **options) -> str:
        name = name.strip()
        if not name or len(name) > Account._meta.get_field("name").max_length:
            raise CommandError("The account name must be 1 to 100 characters.")
        User = get_user_model()
        username_field = User._meta.get_field(User.USERNAME_FIELD)
        try:
            username_field.run_validators(owner)
        except Exception as e:  # ValidationError carries the reason to show
            raise CommandError(f"Invalid username {owner!r}: {' '.join(getattr(e, 'messages', [str(e)]))}") from e
        with transaction.atomic():
            user, created = User.objects.get_or_create(username=owner, defaults={"email": email})
            if created:
                # No password yet: set one with `manage.py changepassword`.
                user.set_unusable_password()
                user.save()
            account = Account.objects.create(name=name)
            Membership.objects.create(user=user, account=account, role=Role.OWNER)
        if created:
            self.stderr.write(f"Created user {owner} (set a password with: manage.py changepassword {owner})")
        return account.id
