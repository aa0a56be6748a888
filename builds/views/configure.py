"""Settings pages: a worker (name, badge, triggers, deploy hooks), a trigger with its
environment variables, and repository connections with their webhook set-up and
recent deliveries. Reading them needs VIEW; changing them needs CONFIGURE.

Secrets are write-only: a secret variable or clone credential can be replaced or
deleted, never shown. A webhook secret is shown once, in the response that created
it, because it has to be pasted into GitHub or GitLab."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import ProtectedError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts.permissions import Action
from builds.forms import ConnectionForm, DeployHookForm, TriggerForm, VariableForm, WorkerForm
from builds.models import DeployHook, EnvironmentVariable, RepoConnection, Trigger, Worker
from builds.views import member, page_context

DELIVERIES_PER_PAGE = 20


def render_worker_settings(request, membership, worker, *, form=None, hook_form=None, status=200) -> HttpResponse:
    context = page_context(
        membership,
        nav="workers",
        worker=worker,
        form=form or WorkerForm(instance=worker),
        hook_form=hook_form or DeployHookForm(worker=worker),
        triggers=worker.triggers.select_related("repo_connection"),
        hooks=worker.deploy_hooks.select_related("trigger"),
        badge_url=request.build_absolute_uri(f"/badge/{worker.tag}.svg"),
    )
    return render(request, "dashboard/worker_settings.html", context, status=status)


@login_required
def worker_settings(request: HttpRequest, account_id: str, tag: str) -> HttpResponse:
    membership = member(request, account_id, Action.CONFIGURE if request.method == "POST" else Action.VIEW)
    worker = get_object_or_404(Worker, account=membership.account, tag=tag)
    if request.method != "POST":
        return render_worker_settings(request, membership, worker)
    form = WorkerForm(request.POST, instance=worker)
    if not form.is_valid():
        return render_worker_settings(request, membership, worker, form=form, status=400)
    form.save()
    messages.success(request, "Worker saved.")
    return redirect("worker_settings", account_id, worker.tag)


@login_required
@require_POST
def deploy_hook_create(request: HttpRequest, account_id: str, tag: str) -> HttpResponse:
    membership = member(request, account_id, Action.CONFIGURE)
    worker = get_object_or_404(Worker, account=membership.account, tag=tag)
    form = DeployHookForm(request.POST, worker=worker)
    if not form.is_valid():
        return render_worker_settings(request, membership, worker, hook_form=form, status=400)
    hook = form.save()
    messages.success(request, f"Deploy hook {hook.name} created. Copy its URL below.")
    return redirect("worker_settings", account_id, worker.tag)


@login_required
@require_POST
def deploy_hook_delete(request: HttpRequest, account_id: str, hook_uuid) -> HttpResponse:
    membership = member(request, account_id, Action.CONFIGURE)
    hook = get_object_or_404(DeployHook, worker__account=membership.account, uuid=hook_uuid)
    hook.delete()
    messages.success(request, f"Deploy hook {hook.name} deleted; its URL no longer starts builds.")
    return redirect("worker_settings", account_id, hook.worker.tag)


def render_trigger(request, membership, worker, trigger, *, form=None, variable_form=None, status=200):
    context = page_context(
        membership,
        nav="workers",
        worker=worker,
        trigger=trigger,
        form=form or TriggerForm(instance=trigger, account_id=membership.account_id),
        variable_form=variable_form or VariableForm(),
        variables=trigger.environment_variables.all() if trigger.pk else [],
        has_connections=RepoConnection.objects.filter(account=membership.account).exists(),
    )
    return render(request, "dashboard/trigger.html", context, status=status)


@login_required
def trigger_create(request: HttpRequest, account_id: str, tag: str) -> HttpResponse:
    membership = member(request, account_id, Action.CONFIGURE)
    worker = get_object_or_404(Worker, account=membership.account, tag=tag)
    trigger = Trigger(worker=worker)
    if request.method != "POST":
        return render_trigger(request, membership, worker, trigger)
    form = TriggerForm(request.POST, instance=trigger, account_id=membership.account_id)
    if not form.is_valid():
        return render_trigger(request, membership, worker, trigger, form=form, status=400)
    trigger = form.save()
    messages.success(request, f"Trigger {trigger.trigger_name} created.")
    return redirect("trigger_edit", account_id, trigger.uuid)


def account_trigger(membership, trigger_uuid) -> Trigger:
    return get_object_or_404(
        Trigger.objects.select_related("worker", "repo_connection"),
        worker__account=membership.account,
        uuid=trigger_uuid,
    )


@login_required
def trigger_edit(request: HttpRequest, account_id: str, trigger_uuid) -> HttpResponse:
    membership = member(request, account_id, Action.CONFIGURE if request.method == "POST" else Action.VIEW)
    trigger = account_trigger(membership, trigger_uuid)
    if request.method != "POST":
        return render_trigger(request, membership, trigger.worker, trigger)
    form = TriggerForm(request.POST, instance=trigger, account_id=membership.account_id)
    if not form.is_valid():
        return render_trigger(request, membership, trigger.worker, trigger, form=form, status=400)
    form.save()
    messages.success(request, "Trigger saved. Builds already queued keep the settings they were queued with.")
    return redirect("trigger_edit", account_id, trigger.uuid)


@login_required
@require_POST
def trigger_delete(request: HttpRequest, account_id: str, trigger_uuid) -> HttpResponse:
    membership = member(request, account_id, Action.CONFIGURE)
    trigger = account_trigger(membership, trigger_uuid)
    trigger.delete()
    messages.success(request, f"Trigger {trigger.trigger_name} deleted. Its builds stay in the history.")
    return redirect("worker_settings", account_id, trigger.worker.tag)


@login_required
@require_POST
def variable_save(request: HttpRequest, account_id: str, trigger_uuid) -> HttpResponse:
    membership = member(request, account_id, Action.CONFIGURE)
    trigger = account_trigger(membership, trigger_uuid)
    form = VariableForm(request.POST)
    if not form.is_valid():
        return render_trigger(request, membership, trigger.worker, trigger, variable_form=form, status=400)
    variable = form.save(trigger)
    messages.success(request, f"Variable {variable.name} saved.")
    return redirect("trigger_edit", account_id, trigger.uuid)


@login_required
@require_POST
def variable_delete(request: HttpRequest, account_id: str, trigger_uuid, variable_id: int) -> HttpResponse:
    membership = member(request, account_id, Action.CONFIGURE)
    trigger = account_trigger(membership, trigger_uuid)
    variable = get_object_or_404(EnvironmentVariable, trigger=trigger, pk=variable_id)
    variable.delete()
    messages.success(request, f"Variable {variable.name} deleted.")
    return redirect("trigger_edit", account_id, trigger.uuid)


@login_required
def connections(request: HttpRequest, account_id: str) -> HttpResponse:
    membership = member(request, account_id, Action.CONFIGURE if request.method == "POST" else Action.VIEW)
    connection = RepoConnection(account=membership.account)
    form = ConnectionForm(request.POST or None, instance=connection)
    if request.method == "POST" and form.is_valid():
        connection = form.save(commit=False)
        secret = connection.rotate_webhook_secret()
        connection.save()
        return render_connection(request, membership, connection, new_secret=secret, status=201)
    context = page_context(
        membership,
        nav="repos",
        connections=membership.account.repo_connections.order_by("repo_name"),
        form=form,
        show_new_connection=request.method == "POST",
    )
    return render(request, "dashboard/connections.html", context, status=400 if request.method == "POST" else 200)


def render_connection(request, membership, connection, *, form=None, new_secret="", status=200) -> HttpResponse:
    deliveries = connection.deliveries.prefetch_related("builds")
    context = page_context(
        membership,
        nav="repos",
        connection=connection,
        form=form or ConnectionForm(instance=connection),
        new_secret=new_secret,
        deliveries=Paginator(deliveries, DELIVERIES_PER_PAGE).get_page(request.GET.get("page")),
        triggers=connection.triggers.select_related("worker"),
    )
    return render(request, "dashboard/connection.html", context, status=status)


@login_required
def connection_detail(request: HttpRequest, account_id: str, connection_uuid) -> HttpResponse:
    membership = member(request, account_id, Action.CONFIGURE if request.method == "POST" else Action.VIEW)
    connection = get_object_or_404(RepoConnection, account=membership.account, uuid=connection_uuid)
    if request.method != "POST":
        return render_connection(request, membership, connection)
    form = ConnectionForm(request.POST, instance=connection)
    if not form.is_valid():
        return render_connection(request, membership, connection, form=form, status=400)
    form.save()
    messages.success(request, "Connection saved.")
    return redirect("connection_detail", account_id, connection.uuid)


@login_required
@require_POST
def connection_rotate(request: HttpRequest, account_id: str, connection_uuid) -> HttpResponse:
    membership = member(request, account_id, Action.CONFIGURE)
    connection = get_object_or_404(RepoConnection, account=membership.account, uuid=connection_uuid)
    secret = connection.rotate_webhook_secret()
    connection.save(update_fields=["webhook_secret_encrypted", "modified_on"])
    return render_connection(request, membership, connection, new_secret=secret)


@login_required
@require_POST
def connection_delete(request: HttpRequest, account_id: str, connection_uuid) -> HttpResponse:
    membership = member(request, account_id, Action.CONFIGURE)
    connection = get_object_or_404(RepoConnection, account=membership.account, uuid=connection_uuid)
    try:
        connection.delete()
    except ProtectedError:
        messages.error(request, "Triggers use this connection: delete or move them first.")
        return redirect("connection_detail", account_id, connection.uuid)
    messages.success(request, f"{connection} disconnected.")
    return redirect("connections", account_id)
