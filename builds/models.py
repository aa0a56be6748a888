"""The build domain: workers, repository connections, triggers and their variables,
builds, their logs, webhook deliveries and deploy hooks. Field names follow the
Cloudflare Workers Builds API."""

import copy
import datetime
import fnmatch
import re
import secrets
import uuid
from typing import NamedTuple

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models, transaction
from django.utils import timezone

from accounts.models import Account, new_hex_id
from builds import encryption


def default_build_timeout() -> int:
    return settings.BUILDSITE_DEFAULT_BUILD_TIMEOUT


def default_build_image() -> str:
    return settings.BUILDSITE_DEFAULT_IMAGE


def default_branch_includes() -> list[str]:
    return ["*"]


def default_path_includes() -> list[str]:
    return ["*"]


class Worker(models.Model):
    """A deploy target. `tag` is the API's `external_script_id`."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="workers")
    tag = models.CharField(max_length=32, unique=True, default=new_hex_id, editable=False)
    name = models.CharField(
        max_length=63,
        validators=[
            RegexValidator(
                r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$",
                "Use lowercase letters, digits and dashes, starting and ending with a letter or digit.",
            )
        ],
    )
    badge_enabled = models.BooleanField(default=False, help_text="Serve a public status badge for this worker.")
    created_on = models.DateTimeField(auto_now_add=True)
    modified_on = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "name"], name="worker_unique_name_per_account")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


# Characters git refuses in a ref name (git check-ref-format), besides control characters.
BRANCH_FORBIDDEN = set(" ~^:?*[\\")


def validate_branch_name(name: str) -> None:
    """A name git accepts as a branch (git check-ref-format's rules), so it is safe to
    hand to git as an argument: it never starts with "-"."""
    if (
        not name
        or len(name) > 255
        or name == "@"
        or name.startswith(("-", "/", "."))
        or name.endswith(("/", ".", ".lock"))
        or any(part in name for part in ("..", "//", "/.", "@{"))
        or any(c in BRANCH_FORBIDDEN or ord(c) < 0x20 or ord(c) == 0x7F for c in name)
    ):
        raise ValidationError("Not a valid git branch name.")


# URL forms of each transport git may be allowed (BUILDSITE_CLONE_PROTOCOLS); git's
# others (ext::, fd::) run commands, and file:/// reads the build host's disk.
CLONE_URL_FORMS = {
    "https": (r"https://", "https://"),
    "http": (r"http://", "http://"),
    "ssh": (r"ssh://|\w[\w.-]*@[\w.-]+:", "ssh://, user@host:"),
    "file": (r"file:///", "file:///"),
}


def validate_clone_url(url: str) -> None:
    """Only URLs of the transports the buddy lets git use (the same setting)."""
    forms = [CLONE_URL_FORMS[p] for p in settings.BUILDSITE_CLONE_PROTOCOLS if p in CLONE_URL_FORMS]
    schemes = "|".join(pattern for pattern, _ in forms) or "(?!)"
    # Nothing may start with "-": git would read it as an option (an ssh host included).
    if not re.match(rf"^(?:{schemes})(?!-)\S+$", url):
        raise ValidationError(f"Use a URL of an allowed transport: {', '.join(label for _, label in forms)}.")


class Provider(models.TextChoices):
    GITHUB = "github", "GitHub"
    GITLAB = "gitlab", "GitLab"


class RepoConnection(models.Model):
    """A repository of a GitHub or GitLab account, with its own webhook URL and secret."""

    uuid = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="repo_connections")
    provider = models.CharField(max_length=16, choices=Provider.choices)
    provider_account_id = models.CharField(max_length=100)
    provider_account_name = models.CharField(max_length=200)
    repo_id = models.CharField(max_length=100)
    repo_name = models.CharField(max_length=200)
    clone_url = models.CharField(max_length=500, help_text="HTTPS, SSH or file:// URL git clones from.")
    # Write-only secrets, encrypted at rest (see builds.encryption).
    clone_credential_encrypted = models.TextField(blank=True, default="", editable=False)
    webhook_secret_encrypted = models.TextField(blank=True, default="", editable=False)
    created_on = models.DateTimeField(auto_now_add=True)
    modified_on = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "provider", "repo_id"], name="repo_connection_unique_repo_per_account"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_provider_display()} {self.provider_account_name}/{self.repo_name}"

    def set_clone_credential(self, credential: str) -> None:
        self.clone_credential_encrypted = encryption.encrypt(credential) if credential else ""

    def clone_credential(self) -> str:
        return encryption.decrypt(self.clone_credential_encrypted) if self.clone_credential_encrypted else ""

    @property
    def has_clone_credential(self) -> bool:
        return bool(self.clone_credential_encrypted)

    def rotate_webhook_secret(self) -> str:
        """Sets a new random webhook secret (not saved) and returns it."""
        secret = secrets.token_hex(32)
        self.webhook_secret_encrypted = encryption.encrypt(secret)
        return secret

    def webhook_secret(self) -> str:
        return encryption.decrypt(self.webhook_secret_encrypted) if self.webhook_secret_encrypted else ""

    @property
    def webhook_url(self) -> str:
        return f"{settings.BUILDSITE_BASE_URL}/webhooks/{self.uuid}"


def match_any(value: str, patterns: list[str]) -> bool:
    """Shell-style `*` wildcards, case-sensitive, as branch and path filters use them."""
    return any(fnmatch.fnmatchcase(value, pattern) for pattern in patterns)


class Trigger(models.Model):
    """Binds a worker to a repository connection: which pushes build, and how."""

    uuid = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="triggers")
    repo_connection = models.ForeignKey(RepoConnection, on_delete=models.PROTECT, related_name="triggers")
    trigger_name = models.CharField(max_length=100)
    production_branch = models.CharField(max_length=255, default="main")
    build_command = models.TextField(blank=True, default="")
    deploy_command = models.TextField(default="npx wrangler deploy")
    non_production_deploy_command = models.TextField(default="npx wrangler versions upload")
    root_directory = models.CharField(max_length=500, default="/")
    branch_includes = models.JSONField(default=default_branch_includes, blank=True)
    branch_excludes = models.JSONField(default=list, blank=True)
    path_includes = models.JSONField(default=default_path_includes, blank=True)
    path_excludes = models.JSONField(default=list, blank=True)
    build_caching_enabled = models.BooleanField(default=False)
    build_image = models.CharField(max_length=300, default=default_build_image)
    build_timeout_seconds = models.PositiveIntegerField(default=default_build_timeout)
    created_on = models.DateTimeField(auto_now_add=True)
    modified_on = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_on"]

    def __str__(self) -> str:
        return f"{self.trigger_name} ({self.worker})"

    @property
    def account_id(self) -> str:
        return self.worker.account_id

    def clean(self) -> None:
        if self.repo_connection_id and self.worker_id and self.repo_connection.account_id != self.worker.account_id:
            raise ValidationError({"repo_connection": "The repository connection belongs to another account."})
        if self.build_timeout_seconds > settings.BUILDSITE_MAX_BUILD_TIMEOUT:
            raise ValidationError({"build_timeout_seconds": f"At most {settings.BUILDSITE_MAX_BUILD_TIMEOUT} seconds."})
        if ".." in self.root_directory.split("/"):
            raise ValidationError({"root_directory": "Must stay inside the repository."})

    def builds_branch(self, branch: str) -> bool:
        """Branch rules: excludes win over includes."""
        return match_any(branch, self.branch_includes) and not match_any(branch, self.branch_excludes)

    def is_production_branch(self, branch: str) -> bool:
        return branch == self.production_branch

    def variables(self) -> tuple[dict[str, str], dict[str, str]]:
        """(plain, secret) variables with their plaintext values, for a build that
        starts now. Read when a build starts, not when it is queued: both kinds come
        from the same moment, and queuing a build (in the webhook's request) reads
        one table less."""
        plain: dict[str, str] = {}
        secret: dict[str, str] = {}
        for variable in self.environment_variables.all():
            (secret if variable.is_secret else plain)[variable.name] = variable.plaintext()
        return plain, secret

    def build_of(
        self,
        *,
        branch: str,
        commit_hash: str,
        commit_message: str = "",
        author: str = "",
        source: str,
        pull_request: dict | None = None,
        deploy_hook: "DeployHook | None" = None,
        delivery: "WebhookDelivery | None" = None,
    ) -> "Build":
        """A queued build of this trigger, not saved yet, with the trigger's settings
        snapshotted so a later edit does not change a build that is already waiting
        (its variables are read when it starts: Trigger.variables)."""
        production = pull_request is None and self.is_production_branch(branch)
        connection = self.repo_connection
        return Build(
            account_id=self.worker.account_id,
            worker=self.worker,
            trigger=self,
            deploy_hook=deploy_hook,
            delivery=delivery,
            branch=branch,
            commit_hash=commit_hash,
            commit_message=commit_message,
            author=author,
            source=source,
            pull_request=pull_request,
            is_production=production,
            build_command=self.build_command,
            deploy_command=self.deploy_command if production else self.non_production_deploy_command,
            root_directory=self.root_directory,
            build_image=self.build_image,
            build_caching_enabled=self.build_caching_enabled,
            timeout_seconds=self.build_timeout_seconds,
            provider_type=connection.provider,
            provider_account_name=connection.provider_account_name,
            repo_name=connection.repo_name,
            clone_url=connection.clone_url,
        )

    def new_build(self, **details) -> "Build":
        """build_of(**details), saved. The caller hands it to the scheduler after its
        transaction commits."""
        build = self.build_of(**details)
        build.save(force_insert=True)
        return build


VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
RESERVED_VARIABLE_NAMES = {"CI", "WORKERS_CI", "HOME", "PATH"}
RESERVED_VARIABLE_PREFIX = "WORKERS_CI_"


def validate_variable_name(name: str) -> None:
    if not VARIABLE_NAME.match(name):
        raise ValidationError("Use letters, digits and underscores, not starting with a digit (at most 128).")
    if name in RESERVED_VARIABLE_NAMES or name.startswith(RESERVED_VARIABLE_PREFIX):
        raise ValidationError(f"{name} is set by Buildsite and cannot be overridden.")


class EnvironmentVariable(models.Model):
    """A build variable. A secret's value is only stored encrypted and is never read
    back except into a build's container environment (and the log masker)."""

    trigger = models.ForeignKey(Trigger, on_delete=models.CASCADE, related_name="environment_variables")
    name = models.CharField(max_length=128, validators=[validate_variable_name])
    is_secret = models.BooleanField(default=False)
    # Plain variables only; empty for secrets.
    value = models.TextField(blank=True, default="")
    value_encrypted = models.TextField(blank=True, default="", editable=False)
    created_on = models.DateTimeField(auto_now_add=True)
    modified_on = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["trigger", "name"], name="variable_unique_name_per_trigger")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def set_value(self, value: str, *, is_secret: bool) -> None:
        self.is_secret = is_secret
        if is_secret:
            self.value = ""
            self.value_encrypted = encryption.encrypt(value)
        else:
            self.value = value
            self.value_encrypted = ""

    def plaintext(self) -> str:
        return encryption.decrypt(self.value_encrypted) if self.is_secret else self.value


def new_hook_id() -> str:
    return secrets.token_urlsafe(32)


class DeployHook(models.Model):
    """A URL that queues a build of one branch; the unguessable id is the credential."""

    uuid = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    hook_id = models.CharField(max_length=64, unique=True, default=new_hook_id, editable=False)
    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="deploy_hooks")
    trigger = models.ForeignKey(Trigger, on_delete=models.CASCADE, related_name="deploy_hooks")
    name = models.CharField(max_length=100)
    branch = models.CharField(max_length=255)
    created_on = models.DateTimeField(auto_now_add=True)
    last_triggered_on = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.branch})"

    @property
    def url(self) -> str:
        return f"{settings.BUILDSITE_BASE_URL}/client/v4/workers/builds/deploy_hooks/{self.hook_id}"


class BuildStatus(models.TextChoices):
    QUEUED = "queued"
    INITIALIZING = "initializing"
    RUNNING = "running"
    STOPPED = "stopped"


class BuildOutcome(models.TextChoices):
    SUCCESS = "success"
    FAIL = "fail"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    TERMINATED = "terminated"


class BuildSource(models.TextChoices):
    PUSH = "push"
    PULL_REQUEST = "pull_request"
    MANUAL = "manual"
    API = "api"
    DEPLOY_HOOK = "deploy_hook"


# Where a build may come from, for each status it may move to.
ALLOWED_TRANSITIONS: dict[str, tuple[str, ...]] = {
    BuildStatus.INITIALIZING: (BuildStatus.QUEUED,),
    BuildStatus.RUNNING: (BuildStatus.INITIALIZING,),
    BuildStatus.STOPPED: (BuildStatus.QUEUED, BuildStatus.INITIALIZING, BuildStatus.RUNNING),
}
ACTIVE_STATUSES = (BuildStatus.INITIALIZING, BuildStatus.RUNNING)
STAMP_FIELDS = {
    BuildStatus.INITIALIZING: "initializing_on",
    BuildStatus.RUNNING: "running_on",
    BuildStatus.STOPPED: "stopped_on",
}


class Build(models.Model):
    build_uuid = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    # Denormalised from worker so the scheduler's per-account queue is one index scan.
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="builds")
    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="builds")
    # Builds outlive their trigger: history stays when a trigger is deleted.
    trigger = models.ForeignKey(Trigger, on_delete=models.SET_NULL, null=True, blank=True, related_name="builds")
    deploy_hook = models.ForeignKey(DeployHook, on_delete=models.SET_NULL, null=True, blank=True, related_name="builds")
    retry_of = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="retries")
    # The webhook delivery that queued it, whose record (outcome, reason) is written
    # first, in the same transaction.
    delivery = models.ForeignKey(
        "WebhookDelivery", on_delete=models.SET_NULL, null=True, blank=True, related_name="builds"
    )

    # What to build (build_trigger_metadata).
    branch = models.CharField(max_length=255)
    commit_hash = models.CharField(max_length=64)
    commit_message = models.TextField(blank=True, default="")
    author = models.CharField(max_length=255, blank=True, default="")
    source = models.CharField(max_length=16, choices=BuildSource.choices)
    pull_request = models.JSONField(null=True, blank=True, help_text="number, url, title of the PR or MR.")
    is_production = models.BooleanField(default=False)

    # Snapshot of the trigger and connection when the build was queued.
    build_command = models.TextField(blank=True, default="")
    deploy_command = models.TextField(blank=True, default="")
    root_directory = models.CharField(max_length=500, default="/")
    build_image = models.CharField(max_length=300)
    build_caching_enabled = models.BooleanField(default=False)
    timeout_seconds = models.PositiveIntegerField(default=default_build_timeout)
    environment_variables = models.JSONField(
        default=dict, blank=True, help_text="The non-secret variables it ran with, recorded when it starts running."
    )
    provider_type = models.CharField(max_length=16, choices=Provider.choices)
    provider_account_name = models.CharField(max_length=200, blank=True, default="")
    repo_name = models.CharField(max_length=200, blank=True, default="")
    clone_url = models.CharField(max_length=500)

    # Where the build is (status), how it ended (build_outcome) and why (reason).
    status = models.CharField(max_length=16, choices=BuildStatus.choices, default=BuildStatus.QUEUED)
    # null, not "": the API reports build_outcome as null until the build stops.
    build_outcome = models.CharField(  # noqa: DJ001
        max_length=16, choices=BuildOutcome.choices, null=True, blank=True
    )
    reason = models.TextField(blank=True, default="")
    exit_code = models.IntegerField(null=True, blank=True)
    created_on = models.DateTimeField(default=timezone.now, editable=False)
    initializing_on = models.DateTimeField(null=True, blank=True)
    running_on = models.DateTimeField(null=True, blank=True)
    stopped_on = models.DateTimeField(null=True, blank=True)
    modified_on = models.DateTimeField(auto_now=True)

    # Runtime bookkeeping of the Build Buddy.
    container_id = models.CharField(max_length=100, blank=True, default="")
    # host:pid of the Build Buddy that claimed the build; empty until one did.
    runner = models.CharField(max_length=200, blank=True, default="")
    heartbeat_on = models.DateTimeField(null=True, blank=True)
    phases = models.JSONField(default=list, blank=True, help_text="[{name, started_on, stopped_on, exit_code}]")
    # The last log sequence number handed out; taken under the row lock, so system
    # lines from other processes never collide with the buddy's.
    log_seq = models.PositiveIntegerField(default=0)
    log_bytes = models.BigIntegerField(default=0)
    log_truncated = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_on"]
        indexes = [
            # Builds of a worker, newest first (worker pages, builds/latest).
            models.Index(fields=["worker", "-created_on"], name="build_worker_newest"),
            # The scheduler's queue: an account's queued builds, oldest first.
            models.Index(
                fields=["account", "created_on"],
                name="build_account_queue",
                condition=models.Q(status="queued"),
            ),
            # Slots in use and the reaper's sweep over active builds.
            models.Index(
                fields=["account", "status"],
                name="build_account_active",
                condition=models.Q(status__in=["initializing", "running"]),
            ),
            # Older queued builds of the same trigger and branch, superseded by a push.
            models.Index(fields=["trigger", "branch", "status"], name="build_trigger_branch"),
            # Builds of an account changed since a time: the live lists' database poll.
            models.Index(fields=["account", "modified_on"], name="build_account_modified"),
        ]

    def __str__(self) -> str:
        return f"{self.worker} {self.branch}@{self.short_commit} ({self.status})"

    @property
    def short_commit(self) -> str:
        return self.commit_hash[:7]

    @property
    def is_finished(self) -> bool:
        return self.status == BuildStatus.STOPPED

    def transition(self, status: str, *, outcome: str | None = None, reason: str = "", **fields) -> bool:
        """The one place a build changes state. A conditional UPDATE moves the row only
        from a status allowed to precede `status`, so when two processes race exactly
        one wins; the loser gets False. Either way self is refreshed from the database.
        `fields` are written together with the move (exit_code, container_id, ...)."""
        if status not in ALLOWED_TRANSITIONS:
            raise ValueError(f"No build moves to {status!r}.")
        if (status == BuildStatus.STOPPED) != (outcome is not None):
            raise ValueError("An outcome is given exactly when a build stops.")
        now = timezone.now()
        values = {"status": status, STAMP_FIELDS[status]: now, "modified_on": now, **fields}
        if status == BuildStatus.STOPPED:
            values.update(build_outcome=outcome, reason=reason)
        elif status in ACTIVE_STATUSES:
            values["heartbeat_on"] = now
        moved = Build.objects.filter(pk=self.pk, status__in=ALLOWED_TRANSITIONS[status]).update(**values) == 1
        self.refresh_from_db()
        if moved:
            from builds import events
            from buildsite import metrics

            # A copy: the callbacks run at commit, when self may have moved on again.
            moved_to = copy.copy(self)
            transaction.on_commit(lambda: (events.build_changed(moved_to), metrics.build_moved(moved_to)))
        return moved

    @property
    def deadline(self) -> datetime.datetime | None:
        """When the build times out: its timeout counts from the moment it took a slot."""
        if self.initializing_on is None:
            return None
        return self.initializing_on + datetime.timedelta(seconds=self.timeout_seconds)

    def claim(self, runner: str) -> bool:
        """A Build Buddy takes a dispatched build. Exactly one can: a task delivered
        twice, or one for a build cancelled or reaped meanwhile, gets False and must not
        run it."""
        claimed = (
            Build.objects.filter(pk=self.pk, status=BuildStatus.INITIALIZING, runner="").update(
                runner=runner, heartbeat_on=timezone.now()
            )
            == 1
        )
        self.refresh_from_db()
        return claimed

    def beat(self) -> bool:
        """The buddy's heartbeat; False once the build has stopped (cancelled, reaped),
        which tells the buddy to stop working on it."""
        return Build.objects.filter(pk=self.pk, status__in=ACTIVE_STATUSES).update(heartbeat_on=timezone.now()) == 1

    def stop(self, outcome: str, reason: str = "", **fields) -> bool:
        return self.transition(BuildStatus.STOPPED, outcome=outcome, reason=reason, **fields)

    def cancel(self, reason: str) -> bool:
        """Stops a queued or active build as cancelled; False if it had stopped already.
        An active build's container is killed by name, which works from any process;
        its Build Buddy then finds the build stopped and only cleans up."""
        if not self.stop(BuildOutcome.CANCELLED, reason):
            return False
        from builds import executors

        executors.kill_build(self)
        return True

    def retry(self, source: str) -> "Build":
        """A new queued build of the same commit with the trigger's current settings.
        The caller hands it to the scheduler after commit."""
        if self.trigger is None:
            raise ValidationError("The trigger of this build was deleted; it cannot be retried.")
        build = self.trigger.new_build(
            branch=self.branch,
            commit_hash=self.commit_hash,
            commit_message=self.commit_message,
            author=self.author,
            source=source,
            pull_request=self.pull_request,
        )
        build.retry_of = self
        build.save(update_fields=["retry_of"])
        return build


class LogStream(models.TextChoices):
    STDOUT = "stdout"
    STDERR = "stderr"
    SYSTEM = "system"


class LogLine(NamedTuple):
    """One line of a build's log, as readers see it. `seq` increases by one per line
    within a build, and is what cursors encode."""

    seq: int
    timestamp: datetime.datetime
    stream: str
    text: str


class LogChunk(models.Model):
    """Consecutive lines of one stream of a build's log, stored together (as GitLab
    stores build trace chunks): lines first_seq..last_seq, joined by "\n" in `text`;
    a line never contains one. One row per run of lines that arrived together costs
    the database a fraction of one row per line, which matters for builds that print
    hundreds of thousands of lines. builds.logs bounds a chunk's size, so reading a
    page of the log never loads a huge row."""

    # No index of its own: the unique (build, last_seq) index below serves every
    # lookup by build.
    build = models.ForeignKey(Build, on_delete=models.CASCADE, related_name="log_chunks", db_index=False)
    first_seq = models.PositiveIntegerField()
    last_seq = models.PositiveIntegerField()
    timestamp = models.DateTimeField()
    stream = models.CharField(max_length=8, choices=LogStream.choices)
    text = models.TextField()

    class Meta:
        ordering = ["build", "last_seq"]
        # Also the index for "the chunks of a build that end after a sequence number".
        constraints = [models.UniqueConstraint(fields=["build", "last_seq"], name="log_chunk_unique_last_seq")]

    def __str__(self) -> str:
        return f"{self.first_seq}-{self.last_seq}: {self.text[:80]}"

    def lines(self, after_seq: int = 0, up_to_seq: int | None = None) -> list[LogLine]:
        """The chunk's lines with after_seq < seq <= up_to_seq."""
        texts = self.text.split("\n")
        start = max(after_seq + 1 - self.first_seq, 0)
        stop = len(texts) if up_to_seq is None else max(up_to_seq + 1 - self.first_seq, 0)
        return [
            LogLine(seq, self.timestamp, self.stream, text)
            for seq, text in enumerate(texts[start:stop], self.first_seq + start)
        ]


class DeliveryOutcome(models.TextChoices):
    QUEUED = "queued", "Builds queued"
    IGNORED = "ignored", "Ignored"
    SKIPPED = "skipped", "Skipped"
    REJECTED = "rejected", "Rejected"


class WebhookDelivery(models.Model):
    """Every delivery received, accepted or not, so a user can see why a push did or
    did not build; the provider's delivery id makes redeliveries idempotent."""

    repo_connection = models.ForeignKey(RepoConnection, on_delete=models.CASCADE, related_name="deliveries")
    provider = models.CharField(max_length=16, choices=Provider.choices)
    event = models.CharField(max_length=100, blank=True, default="")
    delivery_id = models.CharField(max_length=200, blank=True, default="")
    received_on = models.DateTimeField(default=timezone.now)
    response_code = models.PositiveSmallIntegerField(default=0)
    outcome = models.CharField(max_length=16, choices=DeliveryOutcome.choices, blank=True, default="")
    reason = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-received_on"]
        indexes = [models.Index(fields=["repo_connection", "-received_on"], name="delivery_connection_newest")]
        constraints = [
            # Only deliveries that were verified claim their id: a forged request
            # with a stolen id must not block the real one.
            models.UniqueConstraint(
                fields=["repo_connection", "delivery_id"],
                name="delivery_unique_id_per_connection",
                condition=~models.Q(delivery_id="") & ~models.Q(outcome="rejected"),
            )
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.delivery_id} ({self.response_code})"
