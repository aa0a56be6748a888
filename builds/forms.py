"""Dashboard forms. Validation errors are shown next to the field they belong to;
write-only secrets (clone credential, secret variables) are inputs that never render a
stored value."""

import re

from django import forms
from django.core.exceptions import ValidationError

from builds.models import (
    DeployHook,
    EnvironmentVariable,
    RepoConnection,
    Trigger,
    Worker,
    validate_variable_name,
)


class PatternListField(forms.CharField):
    """A list of patterns, one per line, stored as a JSON list."""

    widget = forms.Textarea(attrs={"rows": 3, "spellcheck": "false"})

    def prepare_value(self, value):
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value) -> list[str]:
        return [line.strip() for line in (value or "").splitlines() if line.strip()]


class WorkerForm(forms.ModelForm):
    class Meta:
        model = Worker
        fields = ["name", "badge_enabled"]
        help_texts = {"name": "Lowercase letters, digits and dashes."}

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        taken = Worker.objects.filter(account_id=self.instance.account_id, name=name).exclude(pk=self.instance.pk)
        if taken.exists():
            raise ValidationError("A worker with this name exists in this account.")
        return name


class TriggerForm(forms.ModelForm):
    branch_includes = PatternListField(required=False, help_text="One pattern per line; * matches anything.")
    branch_excludes = PatternListField(required=False, help_text="Excludes win over includes.")
    path_includes = PatternListField(required=False, help_text="Watch paths: build only when one of these changed.")
    path_excludes = PatternListField(required=False)

    class Meta:
        model = Trigger
        fields = [
            "trigger_name",
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
        ]
        widgets = {
            "build_command": forms.TextInput(attrs={"class": "mono"}),
            "deploy_command": forms.TextInput(attrs={"class": "mono"}),
            "non_production_deploy_command": forms.TextInput(attrs={"class": "mono"}),
        }
        labels = {"non_production_deploy_command": "Preview deploy command", "build_timeout_seconds": "Timeout (s)"}

    def __init__(self, *args, account_id: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["repo_connection"].queryset = RepoConnection.objects.filter(account_id=account_id)
        if self.instance.pk is None:
            self.initial.setdefault("branch_includes", ["*"])
            self.initial.setdefault("path_includes", ["*"])


class VariableForm(forms.Form):
    """Adds a variable, or replaces the value of the one with this name."""

    name = forms.CharField(max_length=128, validators=[validate_variable_name])
    value = forms.CharField(required=False, strip=False, widget=forms.PasswordInput(render_value=False))
    is_secret = forms.BooleanField(required=False, label="Secret")

    def clean(self) -> dict:
        data = super().clean()
        if data.get("is_secret") and not data.get("value"):
            self.add_error("value", "A secret needs a value.")
        return data

    def save(self, trigger: Trigger) -> EnvironmentVariable:
        name = self.cleaned_data["name"]
        variable = trigger.environment_variables.filter(name=name).first() or EnvironmentVariable(
            trigger=trigger, name=name
        )
        variable.set_value(self.cleaned_data["value"], is_secret=self.cleaned_data["is_secret"])
        variable.save()
        return variable


class ConnectionForm(forms.ModelForm):
    clone_credential = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Optional token for private repositories. Write-only: leave empty to keep the current one.",
    )
    remove_clone_credential = forms.BooleanField(required=False, label="Remove the stored credential")

    class Meta:
        model = RepoConnection
        fields = ["provider", "provider_account_id", "provider_account_name", "repo_id", "repo_name", "clone_url"]
        labels = {
            "provider_account_id": "Owner id",
            "provider_account_name": "Owner (user or group)",
            "repo_id": "Repository id",
            "repo_name": "Repository name",
        }
        help_texts = {
            "provider_account_id": "GitHub: the owner's numeric id. GitLab: the namespace id.",
            "repo_id": "The numeric id webhooks carry (GitHub repository.id, GitLab project.id).",
        }

    def clean(self) -> dict:
        data = super().clean()
        taken = RepoConnection.objects.filter(
            account_id=self.instance.account_id, provider=data.get("provider"), repo_id=data.get("repo_id")
        ).exclude(pk=self.instance.pk)
        if taken.exists():
            self.add_error("repo_id", "This repository is connected already.")
        return data

    def save(self, commit: bool = True) -> RepoConnection:
        if self.cleaned_data.get("remove_clone_credential"):
            self.instance.set_clone_credential("")
        elif self.cleaned_data.get("clone_credential"):
            self.instance.set_clone_credential(self.cleaned_data["clone_credential"])
        return super().save(commit)


class DeployHookForm(forms.ModelForm):
    class Meta:
        model = DeployHook
        fields = ["name", "trigger", "branch"]

    def __init__(self, *args, worker: Worker, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.instance.worker = worker
        self.fields["trigger"].queryset = worker.triggers.all()


COMMIT = re.compile(r"^[0-9a-f]{7,64}$")


class ManualBuildForm(forms.Form):
    trigger = forms.ModelChoiceField(queryset=Trigger.objects.none(), empty_label=None)
    branch = forms.CharField(max_length=255)
    commit_hash = forms.CharField(
        max_length=64, required=False, label="Commit", help_text="Empty: the tip of the branch."
    )

    def __init__(self, *args, worker: Worker, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["trigger"].queryset = worker.triggers.select_related("repo_connection")
        first = self.fields["trigger"].queryset.first()
        if first is not None:
            self.initial.setdefault("trigger", first.pk)
            self.initial.setdefault("branch", first.production_branch)

    def clean_branch(self) -> str:
        branch = self.cleaned_data["branch"].strip()
        if branch.startswith("-") or any(c in branch for c in " ~^:?*[\\") or ".." in branch:
            raise ValidationError("Not a valid branch name.")
        return branch

    def clean_commit_hash(self) -> str:
        commit = self.cleaned_data["commit_hash"].strip().lower()
        if commit and not COMMIT.match(commit):
            raise ValidationError("A commit is 7 to 64 hexadecimal characters.")
        return commit
