"""The two URLs outside systems POST to: a repository connection's webhook and a
deploy hook. Each URL's secret part is its only credential, so neither uses
sessions, CSRF tokens or API tokens. Every answer is JSON with a reason."""

import logging
import re
import uuid

from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from builds import deploy_hooks, triggers, webhooks
from builds.api import envelope
from builds.models import DeployHook, RepoConnection

log = logging.getLogger(__name__)

HOOK_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
DATABASE_DOWN = "Buildsite cannot reach its database right now."
RETRY_AFTER_SECONDS = "30"


@csrf_exempt
def webhook(request: HttpRequest, connection_uuid: str) -> JsonResponse:
    if request.method != "POST":
        body = {"outcome": "rejected", "reason": "Webhooks are delivered with POST."}
        return JsonResponse(body, status=405, headers={"Allow": "POST"})
    try:
        connection, connection_triggers = triggers.connection_with_triggers(uuid.UUID(connection_uuid))
    except (ValueError, RepoConnection.DoesNotExist):
        # Not recorded: there is no connection to record it against.
        return JsonResponse({"outcome": "rejected", "reason": "No repository connection has this URL."}, status=404)
    except DatabaseError:
        # The database is down or restarting: the sender sees why, and that a
        # redelivery will work (GitHub does not redeliver by itself).
        log.exception("Webhook delivery to connection %s: the database cannot be read", connection_uuid)
        status, body = 503, {"outcome": "rejected", "reason": f"{DATABASE_DOWN} Redeliver it later."}
    else:
        status, body = webhooks.receive(connection, connection_triggers, request)
    # A 503 is our failure, not the delivery's.
    return JsonResponse(body, status=status, headers={"Retry-After": RETRY_AFTER_SECONDS} if status == 503 else None)


def answer(status: int, *, result: dict | None = None, error: str = "", headers: dict | None = None) -> JsonResponse:
    """In the API's envelope, as the deploy hook URL lives under /client/v4/."""
    errors = [envelope.error(envelope.CODES.get(status, envelope.INVALID_REQUEST), error)] if error else None
    return JsonResponse(envelope.envelope(result, errors=errors), status=status, headers=headers)


@csrf_exempt
def deploy_hook(request: HttpRequest, hook_id: str) -> JsonResponse:
    if request.method != "POST":
        return answer(405, error="Trigger a deploy hook with POST.", headers={"Allow": "POST"})
    try:
        hook = None
        if HOOK_ID.fullmatch(hook_id):
            hook = DeployHook.objects.select_related("trigger__worker", "trigger__repo_connection")
            hook = hook.filter(hook_id=hook_id).first()
        if hook is None:
            return answer(404, error="No deploy hook has this URL.")
        triggered = deploy_hooks.trigger(hook)
    except deploy_hooks.RateLimited as limited:
        return answer(
            429,
            error=f"{limited.reason} Retry in {limited.retry_after} s.",
            headers={"Retry-After": str(limited.retry_after)},
        )
    except DatabaseError:
        # As for webhooks: the caller (a CMS, a cron job) learns that retrying works.
        log.exception("Deploy hook: the database cannot be reached")
        return answer(503, error=DATABASE_DOWN, headers={"Retry-After": RETRY_AFTER_SECONDS})
    build = triggered.build
    return answer(
        200 if triggered.already_exists else 202,
        result={
            "already_exists": triggered.already_exists,
            "build_uuid": str(build.build_uuid),
            "created_on": build.created_on.isoformat(),
            "status": build.status,
            "branch": build.branch,
            "worker": build.worker.name,
        },
    )
