"""The API endpoints under /client/v4/accounts/<account_id>/builds/. Each finds its
object in the URL's account (see base.AccountAPIView), calls a model method, and
answers in the envelope. Paths and fields follow Cloudflare's Workers Builds API."""

from functools import cached_property

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import Action
from builds import cache, logs, scheduler
from builds.api import schema
from builds.api.base import AccountAPIView
from builds.api.envelope import Conflict, ok
from builds.api.serializers import (
    BuildSerializer,
    DeployHookSerializer,
    EnvironmentVariableSerializer,
    EnvironmentVariablesInput,
    LatestBuildsQuery,
    LogsQuery,
    ManualBuildSerializer,
    PageQuery,
    RepoConnectionSerializer,
    TriggerSerializer,
    VersionBuildsQuery,
    WorkerBuildsQuery,
    WorkerSerializer,
    build_queryset,
    default_clone_url,
)
from builds.models import (
    ACTIVE_STATUSES,
    Build,
    BuildStatus,
    DeployHook,
    EnvironmentVariable,
    RepoConnection,
    Trigger,
    Worker,
)

LOG_PAGE_LINES = logs.DEFAULT_PAGE_LINES


class AccountLimitsView(AccountAPIView):
    @extend_schema(
        operation_id="getAccountLimits",
        summary="The account's build limits and current use",
        responses=schema.LIMITS,
        tags=["account"],
    )
    def get(self, request: Request, account_id: str) -> Response:
        builds = Build.objects.filter(account=self.account)
        return ok(
            {
                "concurrency_limit": self.account.concurrency_limit,
                # Each count is one scan of a partial index (build_account_active / _queue).
                "running_builds": builds.filter(status__in=ACTIVE_STATUSES).count(),
                "queued_builds": builds.filter(status=BuildStatus.QUEUED).count(),
                "has_reached_build_minutes_limit": False,
                "build_minutes_refresh_on": None,
            }
        )


# Builds.


class BuildsByVersionView(AccountAPIView):
    @extend_schema(
        operation_id="getBuildsByVersionIds",
        summary="Builds by version id (a build's version id is its build_uuid)",
        parameters=[VersionBuildsQuery],
        responses=schema.BUILDS_BY_ID,
        tags=["builds"],
    )
    def get(self, request: Request, account_id: str) -> Response:
        ids = self.query(VersionBuildsQuery)["version_ids"]
        builds = list(build_queryset().filter(account=self.account, build_uuid__in=ids))
        data = self.output(BuildSerializer, builds, many=True)
        return ok({"builds": {str(build.build_uuid): item for build, item in zip(builds, data, strict=True)}})


class LatestBuildsView(AccountAPIView):
    @extend_schema(
        operation_id="getLatestBuildsByScripts",
        summary="The newest build of each worker",
        parameters=[LatestBuildsQuery],
        responses=schema.BUILDS_BY_ID,
        tags=["builds"],
    )
    def get(self, request: Request, account_id: str) -> Response:
        tags = self.query(LatestBuildsQuery)["external_script_ids"]
        latest = {}
        for worker in Worker.objects.filter(account=self.account, tag__in=tags):
            # One scan of build_worker_newest per worker (at most 20).
            build = build_queryset().filter(worker=worker).order_by("-created_on").first()
            if build is not None:
                latest[worker.tag] = self.output(BuildSerializer, build)
        return ok({"builds": latest})


class BuildView(AccountAPIView):
    lookup_field = lookup_url_kwarg = "build_uuid"

    def get_queryset(self):
        return build_queryset().filter(account=self.account)


class BuildDetailView(BuildView):
    @extend_schema(operation_id="getBuildByUuid", summary="A build", responses=schema.BUILD, tags=["builds"])
    def get(self, request: Request, account_id: str, build_uuid) -> Response:
        return ok(self.output(BuildSerializer, self.get_object()))


class BuildCancelView(BuildView):
    actions = {"PUT": Action.BUILD}

    @extend_schema(
        operation_id="cancelBuildByUuid",
        summary="Cancel a queued or running build",
        request=None,
        responses={200: schema.BUILD, 409: schema.CONFLICT},
        tags=["builds"],
    )
    def put(self, request: Request, account_id: str, build_uuid) -> Response:
        build = self.get_object()
        if not build.cancel(f"Cancelled by {request.user.get_username()}."):
            raise Conflict("The build has already stopped.")
        return ok(self.output(BuildSerializer, build))


class BuildRetryView(BuildView):
    actions = {"POST": Action.BUILD}

    @extend_schema(
        operation_id="retryBuildByUuid",
        summary="Build the same commit again with the trigger's current settings",
        request=None,
        responses={200: schema.BUILD, 409: schema.CONFLICT},
        tags=["builds"],
    )
    def post(self, request: Request, account_id: str, build_uuid) -> Response:
        build = self.get_object()
        try:
            with transaction.atomic():
                retry = build.retry(self.build_source())
                scheduler.enqueue([retry])
        except DjangoValidationError as e:
            raise Conflict(e.messages[0]) from e
        return ok(self.output(BuildSerializer, retry))


class BuildLogsView(BuildView):
    @extend_schema(
        operation_id="getBuildLogs",
        summary="A page of a build's log, after a cursor",
        description=f"At most {LOG_PAGE_LINES} lines a page. Follow the returned cursor until a page "
        "comes back empty to read the whole log; while the build runs, the same cursor later returns "
        "the lines stored since.",
        parameters=[LogsQuery],
        responses=schema.LOGS,
        tags=["builds"],
    )
    def get(self, request: Request, account_id: str, build_uuid) -> Response:
        build = self.get_object()
        try:
            after = logs.decode_cursor(self.query(LogsQuery).get("cursor"))
        except logs.InvalidCursor as e:
            raise ValidationError({"cursor": str(e)}) from e
        lines = logs.lines_after(build, after, LOG_PAGE_LINES)
        return ok(
            {
                "cursor": logs.encode_cursor(lines[-1].seq if lines else after),
                "lines": [[round(line.timestamp.timestamp(), 3), line.text] for line in lines],
                "truncated": build.log_truncated,
            }
        )


# Workers and their deploy hooks.


def save_worker(serializer: WorkerSerializer, **fields) -> Worker:
    """Saves; a name another worker of the account has is a 400 on "name" (the
    database's constraint decides, so two requests cannot both take a name)."""
    try:
        with transaction.atomic():
            return serializer.save(**fields)
    except IntegrityError as e:
        raise ValidationError({"name": "Another worker in this account has this name."}) from e


class WorkerListView(AccountAPIView):
    actions = {"POST": Action.CONFIGURE}

    @extend_schema(
        operation_id="listWorkers",
        summary="The account's workers",
        parameters=[PageQuery],
        responses=schema.WORKERS,
        tags=["workers"],
    )
    def get(self, request: Request, account_id: str) -> Response:
        return self.paginated(Worker.objects.filter(account=self.account).order_by("name"), WorkerSerializer)

    @extend_schema(
        operation_id="createWorker",
        summary="Create a worker",
        request=WorkerSerializer,
        responses=schema.WORKER,
        tags=["workers"],
    )
    def post(self, request: Request, account_id: str) -> Response:
        worker = save_worker(self.body(WorkerSerializer), account=self.account)
        return ok(self.output(WorkerSerializer, worker))


class WorkerView(AccountAPIView):
    lookup_field = "tag"
    lookup_url_kwarg = "external_script_id"

    def get_queryset(self):
        return Worker.objects.filter(account=self.account)

    @cached_property
    def worker(self) -> Worker:
        return self.get_object()


class WorkerDetailView(WorkerView):
    actions = {"PATCH": Action.CONFIGURE, "DELETE": Action.CONFIGURE}

    @extend_schema(operation_id="getWorker", summary="A worker", responses=schema.WORKER, tags=["workers"])
    def get(self, request: Request, account_id: str, external_script_id: str) -> Response:
        return ok(self.output(WorkerSerializer, self.get_object()))

    @extend_schema(
        operation_id="updateWorker",
        summary="Change a worker",
        request=WorkerSerializer,
        responses=schema.WORKER,
        tags=["workers"],
    )
    def patch(self, request: Request, account_id: str, external_script_id: str) -> Response:
        worker = save_worker(self.body(WorkerSerializer, self.get_object(), partial=True))
        return ok(self.output(WorkerSerializer, worker))

    @extend_schema(
        operation_id="deleteWorker",
        summary="Delete a worker with its triggers, hooks and builds",
        description="Its queued and running builds are cancelled first.",
        responses=schema.EMPTY,
        tags=["workers"],
    )
    def delete(self, request: Request, account_id: str, external_script_id: str) -> Response:
        worker = self.get_object()
        # Cancel kills running containers; deleting the rows alone would leave them running.
        for build in worker.builds.exclude(status=BuildStatus.STOPPED):
            build.cancel("The worker was deleted.")
        worker.delete()
        return ok()


class WorkerBuildsView(WorkerView):
    @extend_schema(
        operation_id="listWorkerBuilds",
        summary="A worker's builds, newest first",
        parameters=[WorkerBuildsQuery],
        responses=schema.BUILDS,
        tags=["builds"],
    )
    def get(self, request: Request, account_id: str, external_script_id: str) -> Response:
        worker = self.get_object()
        query = self.query(WorkerBuildsQuery)
        builds = build_queryset().filter(worker=worker).order_by("-created_on", "-id")
        if "branch" in query:
            builds = builds.filter(branch=query["branch"])
        if "build_outcome" in query:
            builds = builds.filter(build_outcome=query["build_outcome"])
        return self.paginated(builds, BuildSerializer, query)


class WorkerTriggersView(WorkerView):
    @extend_schema(
        operation_id="listWorkerTriggers",
        summary="A worker's triggers",
        parameters=[PageQuery],
        responses=schema.TRIGGERS,
        tags=["triggers"],
    )
    def get(self, request: Request, account_id: str, external_script_id: str) -> Response:
        worker = self.get_object()
        return self.paginated(worker.triggers.select_related("worker", "repo_connection"), TriggerSerializer)


class WorkerDeployHooksView(WorkerView):
    actions = {"POST": Action.CONFIGURE}

    def get_serializer_context(self) -> dict:
        return {**super().get_serializer_context(), "worker": self.worker}

    @extend_schema(
        operation_id="listDeployHooks",
        summary="A worker's deploy hooks (url only for admins)",
        parameters=[PageQuery],
        responses=schema.DEPLOY_HOOKS,
        tags=["deploy hooks"],
    )
    def get(self, request: Request, account_id: str, external_script_id: str) -> Response:
        hooks = self.worker.deploy_hooks.select_related("trigger").order_by("created_on", "id")
        return self.paginated(hooks, DeployHookSerializer)

    @extend_schema(
        operation_id="createDeployHook",
        summary="Create a deploy hook: a URL that builds a branch when POSTed to",
        request=DeployHookSerializer,
        responses=schema.DEPLOY_HOOK,
        tags=["deploy hooks"],
    )
    def post(self, request: Request, account_id: str, external_script_id: str) -> Response:
        hook = self.body(DeployHookSerializer).save(worker=self.worker)
        return ok(self.output(DeployHookSerializer, hook))


class DeployHookDetailView(AccountAPIView):
    actions = {"DELETE": Action.CONFIGURE}
    lookup_field = "uuid"
    lookup_url_kwarg = "deploy_hook_uuid"

    def get_queryset(self):
        return DeployHook.objects.filter(worker__account=self.account, worker__tag=self.kwargs["external_script_id"])

    @extend_schema(
        operation_id="deleteDeployHook", summary="Delete a deploy hook", responses=schema.EMPTY, tags=["deploy hooks"]
    )
    def delete(self, request: Request, account_id: str, external_script_id: str, deploy_hook_uuid) -> Response:
        self.get_object().delete()
        return ok()


# Triggers and their variables.


class TriggerListView(AccountAPIView):
    actions = {"POST": Action.CONFIGURE}

    @extend_schema(
        operation_id="createTrigger",
        summary="Create a trigger",
        request=TriggerSerializer,
        responses=schema.TRIGGER,
        tags=["triggers"],
    )
    def post(self, request: Request, account_id: str) -> Response:
        trigger = self.body(TriggerSerializer).save()
        return ok(self.output(TriggerSerializer, trigger))


class TriggerView(AccountAPIView):
    lookup_field = "uuid"
    lookup_url_kwarg = "trigger_uuid"

    def get_queryset(self):
        return Trigger.objects.filter(worker__account=self.account).select_related("worker", "repo_connection")


class TriggerDetailView(TriggerView):
    actions = {"PATCH": Action.CONFIGURE, "DELETE": Action.CONFIGURE}

    @extend_schema(operation_id="getTrigger", summary="A trigger", responses=schema.TRIGGER, tags=["triggers"])
    def get(self, request: Request, account_id: str, trigger_uuid) -> Response:
        return ok(self.output(TriggerSerializer, self.get_object()))

    @extend_schema(
        operation_id="updateTrigger",
        summary="Change a trigger",
        request=TriggerSerializer,
        responses=schema.TRIGGER,
        tags=["triggers"],
    )
    def patch(self, request: Request, account_id: str, trigger_uuid) -> Response:
        trigger = self.body(TriggerSerializer, self.get_object(), partial=True).save()
        return ok(self.output(TriggerSerializer, trigger))

    @extend_schema(
        operation_id="deleteTrigger",
        summary="Delete a trigger and its deploy hooks and variables",
        description="Its builds stay, with trigger null.",
        responses=schema.EMPTY,
        tags=["triggers"],
    )
    def delete(self, request: Request, account_id: str, trigger_uuid) -> Response:
        self.get_object().delete()
        return ok()


class TriggerBuildsView(TriggerView):
    actions = {"POST": Action.BUILD}

    @extend_schema(
        operation_id="createManualBuild",
        summary="Start a build",
        description="branch alone builds the tip of that branch; commit_hash alone builds that commit "
        "as the trigger's production branch; both build that commit as that branch. The branch rules "
        "of the trigger do not apply to builds started by hand.",
        request=ManualBuildSerializer,
        responses=schema.BUILD,
        tags=["builds"],
    )
    def post(self, request: Request, account_id: str, trigger_uuid) -> Response:
        trigger = self.get_object()
        data = self.body(ManualBuildSerializer).validated_data
        with transaction.atomic():
            build = trigger.new_build(
                branch=data.get("branch") or trigger.production_branch,
                # Empty: the tip of the branch, which the Build Buddy resolves when it clones.
                commit_hash=data.get("commit_hash", ""),
                author=request.user.get_username(),
                source=self.build_source(),
            )
            scheduler.enqueue([build])
        return ok(self.output(BuildSerializer, build))


class TriggerPurgeCacheView(TriggerView):
    actions = {"POST": Action.CONFIGURE}

    @extend_schema(
        operation_id="purgeBuildCache",
        summary="Delete the trigger's build cache",
        request=None,
        responses=schema.EMPTY,
        tags=["triggers"],
    )
    def post(self, request: Request, account_id: str, trigger_uuid) -> Response:
        cache.purge(self.get_object())
        return ok()


class TriggerVariablesView(TriggerView):
    actions = {"PATCH": Action.CONFIGURE}

    def variables(self, trigger: Trigger) -> Response:
        return ok(
            {
                variable.name: self.output(EnvironmentVariableSerializer, variable)
                for variable in trigger.environment_variables.all()
            }
        )

    @extend_schema(
        operation_id="listEnvironmentVariables",
        summary="A trigger's build variables (secrets as null)",
        responses=schema.VARIABLES,
        tags=["variables"],
    )
    def get(self, request: Request, account_id: str, trigger_uuid) -> Response:
        return self.variables(self.get_object())

    @extend_schema(
        operation_id="upsertEnvironmentVariables",
        summary="Add or replace build variables",
        description='Body: {"NAME": {"value": "...", "is_secret": bool}, ...}. A secret is stored '
        "encrypted and never returned; it is masked in build logs.",
        request={"application/json": schema.VARIABLES_INPUT},
        responses=schema.VARIABLES,
        tags=["variables"],
    )
    def patch(self, request: Request, account_id: str, trigger_uuid) -> Response:
        trigger = self.get_object()
        entries = EnvironmentVariablesInput().run_validation(request.data)
        with transaction.atomic():
            # The trigger's row lock serialises writers, so two PATCHes adding the same
            # name cannot collide.
            Trigger.objects.select_for_update().get(pk=trigger.pk)
            existing = {variable.name: variable for variable in trigger.environment_variables.all()}
            for name, entry in entries.items():
                variable = existing.get(name) or EnvironmentVariable(trigger=trigger, name=name)
                variable.set_value(entry["value"], is_secret=entry.get("is_secret", variable.is_secret))
                variable.save()
        return self.variables(trigger)


class TriggerVariableDetailView(TriggerView):
    actions = {"DELETE": Action.CONFIGURE}

    @extend_schema(
        operation_id="deleteEnvironmentVariable",
        summary="Delete a build variable",
        responses=schema.EMPTY,
        tags=["variables"],
    )
    def delete(self, request: Request, account_id: str, trigger_uuid, environment_variable_key: str) -> Response:
        deleted, _ = self.get_object().environment_variables.filter(name=environment_variable_key).delete()
        if not deleted:
            raise NotFound("The trigger has no variable of this name.")
        return ok()


# Repository connections.


class ConnectionListView(AccountAPIView):
    actions = {"PUT": Action.CONFIGURE}

    @extend_schema(
        operation_id="listRepoConnections",
        summary="The account's repository connections (webhook secrets only for admins)",
        parameters=[PageQuery],
        responses=schema.CONNECTIONS,
        tags=["repository connections"],
    )
    def get(self, request: Request, account_id: str) -> Response:
        connections = RepoConnection.objects.filter(account=self.account).order_by("created_on", "id")
        return self.paginated(connections, RepoConnectionSerializer)

    @extend_schema(
        operation_id="upsertRepoConnection",
        summary="Create or update the connection of a repository (by provider_type and repo_id)",
        description="A new connection gets its own webhook URL and secret, returned here.",
        request=RepoConnectionSerializer,
        responses=schema.CONNECTION,
        tags=["repository connections"],
    )
    def put(self, request: Request, account_id: str) -> Response:
        data = dict(self.body(RepoConnectionSerializer).validated_data)
        credential = data.pop("clone_credential", None)
        with transaction.atomic():
            connection, created = RepoConnection.objects.get_or_create(
                account=self.account,
                provider=data["provider"],
                repo_id=data["repo_id"],
                defaults={
                    **data,
                    "clone_url": data.get("clone_url")
                    or default_clone_url(data["provider"], data["provider_account_name"], data["repo_name"]),
                },
            )
            for field, value in data.items():
                setattr(connection, field, value)
            if created:
                connection.rotate_webhook_secret()
            if credential is not None:
                connection.set_clone_credential(credential)
            connection.save()
        return ok(self.output(RepoConnectionSerializer, connection))


class ConnectionView(AccountAPIView):
    lookup_field = "uuid"
    lookup_url_kwarg = "repo_connection_uuid"

    def get_queryset(self):
        return RepoConnection.objects.filter(account=self.account)


class ConnectionDetailView(ConnectionView):
    actions = {"DELETE": Action.CONFIGURE}

    @extend_schema(
        operation_id="getRepoConnection",
        summary="A repository connection",
        responses=schema.CONNECTION,
        tags=["repository connections"],
    )
    def get(self, request: Request, account_id: str, repo_connection_uuid) -> Response:
        return ok(self.output(RepoConnectionSerializer, self.get_object()))

    @extend_schema(
        operation_id="deleteRepoConnection",
        summary="Delete a repository connection no trigger uses",
        responses={200: schema.EMPTY, 409: schema.CONFLICT},
        tags=["repository connections"],
    )
    def delete(self, request: Request, account_id: str, repo_connection_uuid) -> Response:
        try:
            self.get_object().delete()
        except ProtectedError as e:
            raise Conflict("Triggers use this connection: delete them first.") from e
        return ok()


class ConnectionRotateSecretView(ConnectionView):
    actions = {"POST": Action.CONFIGURE}

    @extend_schema(
        operation_id="rotateRepoConnectionSecret",
        summary="Replace the connection's webhook secret",
        description="The old secret stops working at once; set the new one at the provider.",
        request=None,
        responses=schema.CONNECTION,
        tags=["repository connections"],
    )
    def post(self, request: Request, account_id: str, repo_connection_uuid) -> Response:
        connection = self.get_object()
        connection.rotate_webhook_secret()
        connection.save(update_fields=["webhook_secret_encrypted", "modified_on"])
        return ok(self.output(RepoConnectionSerializer, connection))
