"""What the API reads and writes. Field names follow Cloudflare's Workers Builds API;
the fields it does not have are Buildsite's additions (see docs/api.md).

Secrets are never written out: clone credentials and variable values are write-only,
and webhook secrets and deploy hook URLs are null unless the caller may configure
the account (the `reveal_secrets` context flag)."""

import re

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from builds.models import (
    Build,
    BuildOutcome,
    DeployHook,
    EnvironmentVariable,
    Provider,
    RepoConnection,
    Trigger,
    Worker,
    validate_branch_name,
    validate_clone_url,
    validate_variable_name,
)

MAX_IDS = 20
COMMIT_HASH = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
IMAGE_REFERENCE = re.compile(r"^[a-z0-9][a-zA-Z0-9._/:@-]*$")
MAX_VARIABLE_CHARS = 64 * 1024


def django_errors(error: DjangoValidationError, renamed: dict[str, str] | None = None) -> serializers.ValidationError:
    """A model's ValidationError as a DRF one, with model field names mapped to the API's."""
    renamed = renamed or {}
    if hasattr(error, "error_dict"):
        return serializers.ValidationError({renamed.get(k, k): v for k, v in error.message_dict.items()})
    return serializers.ValidationError(error.messages)


class BranchField(serializers.CharField):
    """A branch name git accepts (DRF runs Django validators and reports their messages)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(max_length=255, validators=[validate_branch_name], **kwargs)


class CommaSeparatedField(serializers.CharField):
    """A comma-separated list of ids in one query parameter, at most MAX_IDS of them."""

    def __init__(self, child: serializers.Field, **kwargs) -> None:
        super().__init__(max_length=4000, **kwargs)
        self.child = child

    def to_internal_value(self, data) -> list:
        items = [item.strip() for item in super().to_internal_value(data).split(",") if item.strip()]
        if not items:
            raise serializers.ValidationError("Give at least one id.")
        if len(items) > MAX_IDS:
            raise serializers.ValidationError(f"At most {MAX_IDS} ids, got {len(items)}.")
        return [self.child.run_validation(item) for item in items]


# Query parameters.


class PageQuery(serializers.Serializer):
    page = serializers.IntegerField(min_value=1, max_value=100_000, default=1, help_text="Page number, from 1.")
    per_page = serializers.IntegerField(min_value=1, max_value=100, default=25, help_text="Items per page.")


class WorkerBuildsQuery(PageQuery):
    branch = serializers.CharField(required=False, max_length=255, help_text="Only builds of this branch.")
    build_outcome = serializers.ChoiceField(
        choices=BuildOutcome.choices, required=False, help_text="Only builds that ended so."
    )


class LatestBuildsQuery(serializers.Serializer):
    external_script_ids = CommaSeparatedField(
        serializers.RegexField(r"^[0-9a-f]{32}$", error_messages={"invalid": "A worker tag is 32 hex digits."}),
        help_text=f"Comma-separated worker tags (external_script_id), at most {MAX_IDS}.",
    )


class VersionBuildsQuery(serializers.Serializer):
    version_ids = CommaSeparatedField(
        serializers.UUIDField(),
        help_text=f"Comma-separated version ids, at most {MAX_IDS}. In Buildsite a build's "
        "version id is its build_uuid.",
    )


class LogsQuery(serializers.Serializer):
    cursor = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=100,
        help_text="The cursor of the previous page; none for the start of the log.",
    )


# Workers and repository connections.


class WorkerSerializer(serializers.ModelSerializer):
    tag = serializers.CharField(read_only=True, help_text="The worker's external_script_id.")

    class Meta:
        model = Worker
        fields = ["tag", "name", "badge_enabled", "created_on", "modified_on"]


class RepoConnectionSummarySerializer(serializers.ModelSerializer):
    """A connection as Cloudflare shows it inside a trigger."""

    repo_connection_uuid = serializers.UUIDField(source="uuid", read_only=True)
    provider_type = serializers.ChoiceField(choices=Provider.choices, source="provider")

    class Meta:
        model = RepoConnection
        fields = [
            "repo_connection_uuid",
            "provider_type",
            "provider_account_id",
            "provider_account_name",
            "repo_id",
            "repo_name",
            "created_on",
            "modified_on",
        ]


class RepoConnectionSerializer(RepoConnectionSummarySerializer):
    clone_url = serializers.CharField(
        max_length=500,
        required=False,
        validators=[validate_clone_url],
        help_text="Where builds clone from. Default: the provider's HTTPS URL of the repository.",
    )
    clone_credential = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=4096,
        trim_whitespace=False,
        help_text="Write-only HTTPS token or password for cloning, stored encrypted; empty removes it.",
    )
    has_clone_credential = serializers.BooleanField(read_only=True)
    webhook_url = serializers.SerializerMethodField(help_text="Where the provider sends pushes (admins only).")
    webhook_secret = serializers.SerializerMethodField(help_text="The webhook's shared secret (admins only).")

    class Meta(RepoConnectionSummarySerializer.Meta):
        fields = [
            *RepoConnectionSummarySerializer.Meta.fields,
            "clone_url",
            "clone_credential",
            "has_clone_credential",
            "webhook_url",
            "webhook_secret",
        ]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_webhook_url(self, connection: RepoConnection) -> str | None:
        return connection.webhook_url if self.context.get("reveal_secrets") else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_webhook_secret(self, connection: RepoConnection) -> str | None:
        return connection.webhook_secret() if self.context.get("reveal_secrets") else None


def default_clone_url(provider: str, account_name: str, repo_name: str) -> str:
    host = "github.com" if provider == Provider.GITHUB else "gitlab.com"
    return f"https://{host}/{account_name}/{repo_name}.git"


# Triggers and their variables.


def pattern_list(help_text: str) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.CharField(max_length=255), max_length=50, required=False, help_text=help_text
    )


class TriggerSerializer(serializers.ModelSerializer):
    trigger_uuid = serializers.UUIDField(source="uuid", read_only=True)
    external_script_id = serializers.SlugRelatedField(
        source="worker", slug_field="tag", queryset=Worker.objects.none(), help_text="The worker's tag."
    )
    repo_connection_uuid = serializers.SlugRelatedField(
        source="repo_connection", slug_field="uuid", queryset=RepoConnection.objects.none(), write_only=True
    )
    repo_connection = RepoConnectionSummarySerializer(read_only=True)
    production_branch = BranchField(required=False)
    branch_includes = pattern_list("Branches that build (shell wildcards); default everything.")
    branch_excludes = pattern_list("Branches that never build; these win over includes.")
    path_includes = pattern_list("Changed paths that start a build; default everything.")
    path_excludes = pattern_list("Changed paths that alone never start a build.")
    build_image = serializers.RegexField(IMAGE_REFERENCE.pattern, max_length=300, required=False)
    build_timeout_seconds = serializers.IntegerField(min_value=1, max_value=24 * 3600, required=False)

    class Meta:
        model = Trigger
        fields = [
            "trigger_uuid",
            "external_script_id",
            "trigger_name",
            "repo_connection_uuid",
            "repo_connection",
            "production_branch",
            "build_command",
            "deploy_command",
            "non_production_deploy_command",
            "root_directory",
            "branch_includes",
            "branch_excludes",
            "path_includes",
            "path_excludes",
            "build_caching_enabled",
            "build_image",
            "build_timeout_seconds",
            "created_on",
            "modified_on",
        ]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Only the account's own workers and connections can be named.
        account = self.context.get("account")
        if account is not None:
            self.fields["external_script_id"].queryset = Worker.objects.filter(account=account)
            self.fields["repo_connection_uuid"].queryset = RepoConnection.objects.filter(account=account)

    def validate(self, attrs: dict) -> dict:
        if self.instance is not None and attrs.get("worker", self.instance.worker) != self.instance.worker:
            raise serializers.ValidationError({"external_script_id": "A trigger cannot move to another worker."})
        trigger = Trigger(**{**self.current_values(), **attrs})
        try:
            trigger.clean()
        except DjangoValidationError as e:
            raise django_errors(e, {"repo_connection": "repo_connection_uuid"}) from e
        return attrs

    def current_values(self) -> dict:
        if self.instance is None:
            return {}
        return {field.name: getattr(self.instance, field.name) for field in Trigger._meta.concrete_fields}


class EnvironmentVariableSerializer(serializers.ModelSerializer):
    value = serializers.SerializerMethodField(help_text="null for a secret.")

    class Meta:
        model = EnvironmentVariable
        fields = ["value", "is_secret", "created_on"]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_value(self, variable: EnvironmentVariable) -> str | None:
        return None if variable.is_secret else variable.value


class EnvironmentVariableInput(serializers.Serializer):
    value = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=MAX_VARIABLE_CHARS)
    is_secret = serializers.BooleanField(
        required=False, help_text="Default: unchanged for an existing variable, false for a new one."
    )


class EnvironmentVariablesInput(serializers.DictField):
    """{"NAME": {"value": "...", "is_secret": bool}, ...}"""

    child = EnvironmentVariableInput()

    def to_internal_value(self, data) -> dict:
        variables = super().to_internal_value(data)
        errors = {}
        for name in variables:
            try:
                validate_variable_name(name)
            except DjangoValidationError as e:
                errors[name] = e.messages
        if errors:
            raise serializers.ValidationError(errors)
        return variables


# Builds.


class ManualBuildSerializer(serializers.Serializer):
    branch = BranchField(required=False, help_text="Build the tip of this branch (or this commit on it).")
    commit_hash = serializers.CharField(
        required=False,
        max_length=64,
        help_text="A full commit SHA. Alone, it builds that commit as the production branch.",
    )

    def validate_commit_hash(self, value: str) -> str:
        value = value.lower()
        if not COMMIT_HASH.match(value):
            raise serializers.ValidationError("Give the full commit hash: 40 (or 64) hex digits.")
        return value

    def validate(self, attrs: dict) -> dict:
        if not attrs.get("branch") and not attrs.get("commit_hash"):
            raise serializers.ValidationError({"branch": "Give a branch, a commit_hash, or both."})
        return attrs


class BuildTriggerMetadataSerializer(serializers.ModelSerializer):
    build_trigger_source = serializers.CharField(source="source")
    environment_variables = serializers.DictField(
        child=serializers.CharField(), help_text="The non-secret variables the build ran with."
    )

    class Meta:
        model = Build
        fields = [
            "author",
            "branch",
            "build_command",
            "build_trigger_source",
            "commit_hash",
            "commit_message",
            "deploy_command",
            "environment_variables",
            "provider_account_name",
            "provider_type",
            "repo_name",
            "root_directory",
        ]


class PullRequestSerializer(serializers.Serializer):
    """The pull or merge request a build came from, as the webhook recorded it."""

    number = serializers.IntegerField(allow_null=True)
    title = serializers.CharField(allow_null=True)
    pull_request_url = serializers.CharField(allow_null=True)

    def to_representation(self, pull_request: dict) -> dict:
        return {
            "number": pull_request.get("number"),
            "title": pull_request.get("title"),
            "pull_request_url": pull_request.get("url"),
        }


class DeployHookSummarySerializer(serializers.ModelSerializer):
    deploy_hook_uuid = serializers.UUIDField(source="uuid", read_only=True)
    deploy_hook_name = serializers.CharField(source="name", read_only=True)

    class Meta:
        model = DeployHook
        fields = ["deploy_hook_uuid", "deploy_hook_name"]


class BuildSerializer(serializers.ModelSerializer):
    build_outcome = serializers.ChoiceField(choices=BuildOutcome.choices, allow_null=True)
    build_trigger_metadata = BuildTriggerMetadataSerializer(source="*")
    trigger = TriggerSerializer(allow_null=True, help_text="null once the trigger is deleted.")
    pull_request = PullRequestSerializer(allow_null=True)
    deploy_hook = DeployHookSummarySerializer(allow_null=True)
    reason = serializers.CharField(help_text="Why the build ended as it did (empty for success).")

    class Meta:
        model = Build
        fields = [
            "build_uuid",
            "status",
            "build_outcome",
            "created_on",
            "initializing_on",
            "running_on",
            "stopped_on",
            "modified_on",
            "build_trigger_metadata",
            "trigger",
            "pull_request",
            "deploy_hook",
            "reason",
        ]
        read_only_fields = fields


def build_queryset():
    """Builds with everything BuildSerializer reads, in one query."""
    return Build.objects.select_related("trigger__worker", "trigger__repo_connection", "deploy_hook")


class DeployHookSerializer(serializers.ModelSerializer):
    deploy_hook_uuid = serializers.UUIDField(source="uuid", read_only=True)
    name = serializers.CharField(min_length=1, max_length=58)
    branch = BranchField()
    trigger_uuid = serializers.SlugRelatedField(
        source="trigger",
        slug_field="uuid",
        queryset=Trigger.objects.none(),
        required=False,
        help_text="The trigger whose settings hook builds use; optional when the worker has one trigger.",
    )
    url = serializers.SerializerMethodField(help_text="POST here to start a build (admins only: it is the secret).")

    class Meta:
        model = DeployHook
        fields = ["deploy_hook_uuid", "name", "branch", "trigger_uuid", "url", "created_on", "last_triggered_on"]
        read_only_fields = ["created_on", "last_triggered_on"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        worker = self.context.get("worker")
        if worker is not None:
            self.fields["trigger_uuid"].queryset = worker.triggers.all()

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_url(self, hook: DeployHook) -> str | None:
        return hook.url if self.context.get("reveal_secrets") else None

    def validate(self, attrs: dict) -> dict:
        if "trigger" not in attrs:
            triggers = list(self.context["worker"].triggers.all()[:2])
            if len(triggers) != 1:
                raise serializers.ValidationError(
                    {"trigger_uuid": "Name the trigger: this worker has " + ("none." if not triggers else "several.")}
                )
            attrs["trigger"] = triggers[0]
        return attrs


class AccountLimitsSerializer(serializers.Serializer):
    concurrency_limit = serializers.IntegerField(help_text="Builds of this account that may run at once.")
    running_builds = serializers.IntegerField(help_text="Builds initializing or running now.")
    queued_builds = serializers.IntegerField(help_text="Builds waiting for a slot now.")
    has_reached_build_minutes_limit = serializers.BooleanField(help_text="Always false: Buildsite counts no minutes.")
    build_minutes_refresh_on = serializers.DateTimeField(allow_null=True, help_text="Always null.")


class BuildsByIdSerializer(serializers.Serializer):
    builds = serializers.DictField(child=BuildSerializer())


class LogsSerializer(serializers.Serializer):
    cursor = serializers.CharField(help_text="Pass it back to get the lines stored after this page.")
    lines = serializers.ListField(
        child=serializers.ListField(child=serializers.JSONField(), min_length=2, max_length=2),
        help_text="[unix epoch seconds, text] pairs, oldest first.",
    )
    truncated = serializers.BooleanField(help_text="The log hit the size cap and later lines were dropped.")
