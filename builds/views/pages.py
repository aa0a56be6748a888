"""Workers and builds: lists, the build page, its raw log, and starting, cancelling
and retrying builds. The `*_row` and `build_summary` views render the fragments the
live pages fetch again when a websocket event says something changed."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.permissions import Action
from builds import logs, scheduler
from builds.forms import ManualBuildForm, WorkerForm
from builds.models import Build, BuildOutcome, BuildSource, BuildStatus, Worker
from builds.views import member, page_context

BUILDS_PER_PAGE = 25
IN_PROGRESS = "in_progress"
OUTCOME_FILTERS = [("", "Any outcome"), (IN_PROGRESS, "In progress"), *BuildOutcome.choices]


def with_latest_build(workers) -> list[Worker]:
    """Each worker with `latest_build` set, in two queries (the second by primary key)."""
    newest = Build.objects.filter(worker=OuterRef("pk")).order_by("-created_on").values("pk")[:1]
    workers = list(workers.annotate(latest_build_id=Subquery(newest)))
    builds = Build.objects.in_bulk([w.latest_build_id for w in workers if w.latest_build_id])
    for worker in workers:
        worker.latest_build = builds.get(worker.latest_build_id)
    return workers


@login_required
def workers(request: HttpRequest, account_id: str) -> HttpResponse:
    membership = member(request, account_id)
    rows = with_latest_build(membership.account.workers.all())
    return render(
        request, "dashboard/workers.html", page_context(membership, nav="workers", workers=rows, form=WorkerForm())
    )


@login_required
def worker_row(request: HttpRequest, account_id: str, tag: str) -> HttpResponse:
    membership = member(request, account_id)
    [worker] = with_latest_build(membership.account.workers.filter(tag=tag)) or [None]
    if worker is None:
        return HttpResponse(status=404)
    return render(request, "dashboard/_worker_row.html", page_context(membership, worker=worker))


@login_required
@require_POST
def worker_create(request: HttpRequest, account_id: str) -> HttpResponse:
    membership = member(request, account_id, Action.CONFIGURE)
    form = WorkerForm(request.POST, instance=Worker(account=membership.account))
    if not form.is_valid():
        rows = with_latest_build(membership.account.workers.all())
        context = page_context(membership, nav="workers", workers=rows, form=form, show_new_worker=True)
        return render(request, "dashboard/workers.html", context, status=400)
    worker = form.save()
    messages.success(request, f"Worker {worker.name} created. Add a trigger to connect a repository.")
    return redirect("worker_settings", account_id, worker.tag)


def filtered_builds(worker: Worker, branch: str, outcome: str):
    builds = worker.builds.all()
    if branch:
        builds = builds.filter(branch=branch)
    if outcome == IN_PROGRESS:
        builds = builds.exclude(status=BuildStatus.STOPPED)
    elif outcome in BuildOutcome.values:
        builds = builds.filter(build_outcome=outcome)
    return builds


@login_required
def worker_detail(request: HttpRequest, account_id: str, tag: str) -> HttpResponse:
    membership = member(request, account_id)
    worker = get_object_or_404(Worker, account=membership.account, tag=tag)
    branch = request.GET.get("branch", "").strip()
    outcome = request.GET.get("outcome", "")
    page = Paginator(filtered_builds(worker, branch, outcome), BUILDS_PER_PAGE).get_page(request.GET.get("page"))
    recent_branches = sorted(set(worker.builds.values_list("branch", flat=True)[:200]))
    context = page_context(
        membership,
        nav="workers",
        worker=worker,
        page=page,
        branch=branch,
        outcome=outcome,
        outcome_filters=OUTCOME_FILTERS,
        recent_branches=recent_branches,
        # New builds are inserted live only where they belong: the first, unfiltered page.
        live_inserts=page.number == 1 and not outcome,
        build_form=ManualBuildForm(worker=worker),
        has_triggers=worker.triggers.exists(),
    )
    return render(request, "dashboard/worker.html", context)


@login_required
def build_row(request: HttpRequest, account_id: str, build_uuid) -> HttpResponse:
    membership = member(request, account_id)
    build = get_object_or_404(Build, account=membership.account, build_uuid=build_uuid)
    return render(request, "dashboard/_build_row.html", page_context(membership, build=build))


@login_required
@require_POST
def build_start(request: HttpRequest, account_id: str, tag: str) -> HttpResponse:
    membership = member(request, account_id, Action.BUILD)
    worker = get_object_or_404(Worker, account=membership.account, tag=tag)
    form = ManualBuildForm(request.POST, worker=worker)
    if not form.is_valid():
        messages.error(request, "The build was not started: " + "; ".join(e for el in form.errors.values() for e in el))
        return redirect("worker_detail", account_id, tag)
    with transaction.atomic():
        build = form.cleaned_data["trigger"].new_build(
            branch=form.cleaned_data["branch"],
            commit_hash=form.cleaned_data["commit_hash"],
            author=request.user.get_username(),
            source=BuildSource.MANUAL,
        )
        scheduler.enqueue([build])
    return redirect("build_detail", account_id, build.build_uuid)


def account_build(membership, build_uuid) -> Build:
    return get_object_or_404(
        Build.objects.select_related("worker", "trigger", "retry_of", "deploy_hook"),
        account=membership.account,
        build_uuid=build_uuid,
    )


@login_required
def build_detail(request: HttpRequest, account_id: str, build_uuid) -> HttpResponse:
    membership = member(request, account_id)
    build = account_build(membership, build_uuid)
    context = page_context(
        membership,
        nav="workers",
        build=build,
        worker=build.worker,
        socket_path=f"/ws/accounts/{account_id}/builds/{build.build_uuid}/",
        log_url=reverse("build_log", args=[account_id, build.build_uuid]),
    )
    return render(request, "dashboard/build.html", context)


@login_required
def build_summary(request: HttpRequest, account_id: str, build_uuid) -> HttpResponse:
    membership = member(request, account_id)
    build = account_build(membership, build_uuid)
    return render(request, "dashboard/_build_summary.html", page_context(membership, build=build))


@login_required
def build_log(request: HttpRequest, account_id: str, build_uuid) -> StreamingHttpResponse:
    """The whole log as plain text, streamed so a 50 MB log never sits in memory."""
    membership = member(request, account_id)
    build = account_build(membership, build_uuid)
    response = StreamingHttpResponse(logs.raw_text(build), content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="build-{build.build_uuid}.log"'
    return response


@login_required
@require_POST
def build_cancel(request: HttpRequest, account_id: str, build_uuid) -> HttpResponse:
    membership = member(request, account_id, Action.BUILD)
    build = account_build(membership, build_uuid)
    if build.cancel(f"Cancelled by {request.user.get_username()}."):
        messages.success(request, "Build cancelled.")
    else:
        messages.info(request, "The build had already stopped.")
    return redirect("build_detail", account_id, build.build_uuid)


@login_required
@require_POST
def build_retry(request: HttpRequest, account_id: str, build_uuid) -> HttpResponse:
    membership = member(request, account_id, Action.BUILD)
    build = account_build(membership, build_uuid)
    try:
        with transaction.atomic():
            retry = build.retry(BuildSource.MANUAL)
            scheduler.enqueue([retry])
    except ValidationError as e:
        messages.error(request, " ".join(e.messages))
        return redirect("build_detail", account_id, build.build_uuid)
    messages.success(request, "Retry queued.")
    return redirect("build_detail", account_id, retry.build_uuid)
