"""Admin for every build model. Secrets are write-only here as everywhere: encrypted
columns are never shown, and forms take a new value without displaying the old one."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db import transaction
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from builds import scheduler
from builds.models import (
    Build,
    BuildSource,
    DeployHook,
    EnvironmentVariable,
    RepoConnection,
    Trigger,
    WebhookDelivery,
    Worker,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records written by the system, which a person inspects but never edits."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ["name", "account", "tag", "badge_enabled", "created_on"]
    list_filter = ["badge_enabled"]
    search_fields = ["name", "tag", "account__name"]
    readonly_fields = ["tag", "created_on", "modified_on"]
    autocomplete_fields = ["account"]


class RepoConnectionForm(forms.ModelForm):
    clone_credential = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only. Leave empty to keep the current credential.",
    )

    class Meta:
        model = RepoConnection
        fields = [
            "account",
            "provider",
            "provider_account_id",
            "provider_account_name",
            "repo_id",
            "repo_name",
            "clone_url",
        ]

    def save(self, commit: bool = True):
        credential = self.cleaned_data.get("clone_credential")
        if credential:
            self.instance.set_clone_credential(credential)
        if not self.instance.webhook_secret_encrypted:
            self.instance.rotate_webhook_secret()
        return super().save(commit)


@admin.register(RepoConnection)
class RepoConnectionAdmin(admin.ModelAdmin):
    form = RepoConnectionForm
    list_display = ["__str__", "account", "provider", "repo_id", "has_clone_credential", "created_on"]
    list_filter = ["provider"]
    search_fields = ["repo_name", "provider_account_name", "uuid", "account__name"]
    readonly_fields = ["uuid", "webhook_url", "created_on", "modified_on"]
    autocomplete_fields = ["account"]
    actions = ["rotate_webhook_secret"]

    @admin.display(boolean=True, description="Clone credential")
    def has_clone_credential(self, obj: RepoConnection) -> bool:
        return obj.has_clone_credential

    @admin.action(description="Rotate webhook secret (shows the new secret once)")
    def rotate_webhook_secret(self, request, queryset) -> None:
        for connection in queryset:
            secret = connection.rotate_webhook_secret()
            connection.save(update_fields=["webhook_secret_encrypted", "modified_on"])
            self.message_user(request, f"{connection}: new webhook secret {secret}", messages.WARNING)


class EnvironmentVariableForm(forms.ModelForm):
    new_value = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        label="Value",
        help_text="Plain values are shown in build metadata; secret values never are. "
        "Leave empty to keep the current value.",
    )

    class Meta:
        model = EnvironmentVariable
        fields = ["name", "is_secret"]

    def save(self, commit: bool = True):
        value = self.cleaned_data.get("new_value")
        is_secret = self.cleaned_data["is_secret"]
        if value or self.instance.pk is None:
            self.instance.set_value(value or "", is_secret=is_secret)
        elif is_secret != self.instance.is_secret:
            # Changing the kind without a value would expose a secret or lose a value.
            self.instance.set_value(self.instance.plaintext(), is_secret=is_secret)
        return super().save(commit)


class EnvironmentVariableInline(admin.TabularInline):
    model = EnvironmentVariable
    form = EnvironmentVariableForm
    extra = 0


class DeployHookInline(admin.TabularInline):
    model = DeployHook
    fk_name = "trigger"
    fields = ["name", "branch", "worker", "url", "last_triggered_on"]
    readonly_fields = ["url", "last_triggered_on"]
    extra = 0


@admin.register(Trigger)
class TriggerAdmin(admin.ModelAdmin):
    list_display = ["trigger_name", "worker", "repo_connection", "production_branch", "modified_on"]
    search_fields = ["trigger_name", "uuid", "worker__name"]
    readonly_fields = ["uuid", "created_on", "modified_on"]
    autocomplete_fields = ["worker", "repo_connection"]
    inlines = [EnvironmentVariableInline, DeployHookInline]


@admin.register(DeployHook)
class DeployHookAdmin(admin.ModelAdmin):
    list_display = ["name", "worker", "branch", "created_on", "last_triggered_on"]
    search_fields = ["name", "worker__name"]
    readonly_fields = ["uuid", "url", "created_on", "last_triggered_on"]
    autocomplete_fields = ["worker", "trigger"]


@admin.register(Build)
class BuildAdmin(ReadOnlyAdmin):
    """Read-only records, with a status that follows the build live (admin-live.js), the
    live log on the change page, and cancel and retry for staff allowed to change builds."""

    list_display = ["build_uuid", "live_status", "worker", "branch", "short_commit", "source", "created_on"]
    list_filter = ["status", "build_outcome", "source", "is_production"]
    search_fields = ["build_uuid", "commit_hash", "branch", "worker__name", "worker__tag"]
    list_select_related = ["worker"]
    date_hierarchy = "created_on"
    exclude = ["environment_variables"]

    actions = ["cancel_builds", "retry_builds"]

    def get_readonly_fields(self, request, obj=None):
        return ["live_status"] + [f.name for f in self.model._meta.fields if f.name != "environment_variables"]

    @admin.display(description="Commit")
    def short_commit(self, obj: Build) -> str:
        return obj.short_commit

    @admin.display(description="Status", ordering="status")
    def live_status(self, obj: Build) -> str:
        label = obj.build_outcome if obj.is_finished else obj.status
        return format_html(
            '<span class="status status--{}" data-live-build="{}" data-status="{}">{}</span>',
            label,
            obj.build_uuid,
            obj.status,
            label,
        )

    def has_build_permission(self, request) -> bool:
        # The admin spans every account, so Django's model permission governs it here.
        return request.user.has_perm("builds.change_build")

    @admin.action(description="Cancel selected builds", permissions=["build"])
    def cancel_builds(self, request, queryset) -> None:
        reason = f"Cancelled by {request.user.get_username()} from the admin."
        cancelled = sum(build.cancel(reason) for build in queryset)
        self.message_user(
            request, f"{cancelled} build(s) cancelled; {queryset.count() - cancelled} had stopped already."
        )

    @admin.action(description="Retry selected builds", permissions=["build"])
    def retry_builds(self, request, queryset) -> None:
        retryable = [build for build in queryset.select_related("trigger") if build.trigger_id]
        with transaction.atomic():
            retries = [build.retry(BuildSource.MANUAL) for build in retryable]
            scheduler.enqueue(retries)
        skipped = queryset.count() - len(retries)
        note = f"; {skipped} skipped because their trigger was deleted" if skipped else ""
        self.message_user(request, f"{len(retries)} retry build(s) queued{note}.")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        build = self.get_object(request, unquote(object_id))
        extra = {"socket_path": f"/ws/admin/builds/{build.build_uuid}/"} if build else {}
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "received_on",
        "repo_connection",
        "event",
        "delivery_id",
        "response_code",
        "outcome",
        "reason",
        "builds_created",
    ]
    list_filter = ["provider", "outcome", "response_code"]
    search_fields = ["delivery_id", "repo_connection__repo_name", "reason"]
    list_select_related = ["repo_connection"]
    date_hierarchy = "received_on"
    readonly_fields = ["builds_created"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("builds")

    @admin.display(description="Builds created")
    def builds_created(self, obj: WebhookDelivery) -> str:
        return format_html_join(
            ", ",
            '<a href="{}">{}</a>',
            ((reverse("admin:builds_build_change", args=[b.pk]), b.build_uuid) for b in obj.builds.all()),
        )
