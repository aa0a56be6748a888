import hashlib
import secrets
import uuid
from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone


def new_hex_id() -> str:
    return uuid.uuid4().hex


def default_concurrency_limit() -> int:
    return settings.BUILDSITE_DEFAULT_CONCURRENCY


class Account(models.Model):
    """A tenant. Every worker, connection, trigger and build belongs to exactly one."""

    id = models.CharField(primary_key=True, max_length=32, default=new_hex_id, editable=False)
    name = models.CharField(max_length=100)
    concurrency_limit = models.PositiveIntegerField(
        default=default_concurrency_limit,
        help_text="Builds of this account that may be initializing or running at once.",
    )
    created_on = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    DEVELOPER = "developer", "Developer"
    READ_ONLY = "read_only", "Read-only"


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.DEVELOPER)
    created_on = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "account"], name="membership_unique_user_account")]

    def __str__(self) -> str:
        return f"{self.user} in {self.account} ({self.get_role_display()})"


TOKEN_PREFIX = "bst_"  # noqa: S105 - a marker, not a secret


def hash_token(plaintext: str) -> str:
    # Tokens carry 256 random bits, so a plain SHA-256 is enough: there is nothing
    # to brute-force that a slow hash would protect.
    return hashlib.sha256(plaintext.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet):
    def active(self) -> "ApiTokenQuerySet":
        now = timezone.now()
        return self.filter(revoked_on__isnull=True).filter(
            models.Q(expires_on__isnull=True) | models.Q(expires_on__gt=now)
        )


class ApiToken(models.Model):
    """A bearer token for one user in one account. The plaintext is returned once by
    `issue()`; only its SHA-256 is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    # The first characters, kept so a person can tell tokens apart in lists.
    prefix = models.CharField(max_length=16, editable=False)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_on = models.DateTimeField(auto_now_add=True)
    last_used_on = models.DateTimeField(null=True, blank=True)
    expires_on = models.DateTimeField(null=True, blank=True)
    revoked_on = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def issue(cls, user, account: Account, name: str, expires_on: datetime | None = None) -> tuple["ApiToken", str]:
        plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(
            user=user,
            account=account,
            name=name,
            prefix=plaintext[:12],
            token_hash=hash_token(plaintext),
            expires_on=expires_on,
        )
        return token, plaintext

    @classmethod
    def authenticate(cls, plaintext: str) -> "ApiToken | None":
        """The active token with this plaintext, its use recorded; None otherwise.
        The lookup is by hash, so no comparison of secret material happens in Python."""
        if not plaintext.startswith(TOKEN_PREFIX):
            return None
        token = cls.objects.active().select_related("user", "account").filter(token_hash=hash_token(plaintext)).first()
        if token is None or not token.user.is_active:
            return None
        now = timezone.now()
        # One write a minute at most: a busy script should not turn every read into a write.
        if token.last_used_on is None or (now - token.last_used_on).total_seconds() > 60:
            cls.objects.filter(pk=token.pk).update(last_used_on=now)
            token.last_used_on = now
        return token

    @property
    def is_active(self) -> bool:
        return self.revoked_on is None and (self.expires_on is None or self.expires_on > timezone.now())

    def revoke(self) -> None:
        ApiToken.objects.filter(pk=self.pk, revoked_on__isnull=True).update(revoked_on=timezone.now())
        self.refresh_from_db(fields=["revoked_on"])
