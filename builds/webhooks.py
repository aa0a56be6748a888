"""Webhook deliveries from GitHub and GitLab: which provider sent one, whether the
connection's secret vouches for it, what it says (one provider-neutral PushEvent, or
the reason it starts nothing), and recording it exactly once.

The order is fixed: provider from the headers, then the raw body is verified before
anything in it is parsed. Every problem is a DeliveryError with a 4xx status and a
reason the sender sees and the delivery record keeps."""

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs

from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils.http import parse_header_parameters

from builds import delivery_statement, scheduler, triggers
from builds.models import Build, BuildSource, DeliveryOutcome, Provider, RepoConnection, Trigger, WebhookDelivery
from buildsite import metrics
from buildsite.structured_logging import bind

log = logging.getLogger(__name__)

# GitHub caps payloads at 25 MB; we refuse anything larger before reading it.
MAX_BODY_BYTES = 25 * 1024 * 1024
ZERO_COMMIT = re.compile(r"0+")
COMMIT_HASH = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
# What git's check-ref-format refuses, plus a leading dash that git would read as
# an option: such a name is never a real branch.
BAD_BRANCH = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|/\.|^[-/.]|[/.]$|\.lock$")
EVENT_HEADERS = {Provider.GITHUB: "X-GitHub-Event", Provider.GITLAB: "X-Gitlab-Event"}


class DeliveryError(Exception):
    """A delivery answered with a 4xx: `reason` is shown to the sender and recorded."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str
    title: str

    def as_dict(self) -> dict:
        return {"number": self.number, "url": self.url, "title": self.title}


@dataclass(frozen=True)
class PushEvent:
    """A push or pull/merge request that may start builds, whoever sent it."""

    provider: str
    source: str  # BuildSource.PUSH or BuildSource.PULL_REQUEST
    branch: str
    commit_hash: str
    commit_message: str = ""
    author: str = ""
    changed_files: tuple[str, ...] = ()
    commit_count: int = 0
    pull_request: PullRequest | None = None


@dataclass(frozen=True)
class Ignored:
    """A verified delivery that starts nothing, and why."""

    reason: str


# Reading headers and body.


def header(headers: Mapping[str, str], name: str) -> str:
    return headers.get(name, "").strip()


def delivery_id_of(headers: Mapping[str, str], provider: str) -> str:
    if provider == Provider.GITHUB:
        return header(headers, "X-GitHub-Delivery")
    # Idempotency-Key stays the same across GitLab's retries; X-Gitlab-Event-UUID is
    # what older GitLab versions send.
    return header(headers, "Idempotency-Key") or header(headers, "X-Gitlab-Event-UUID")


def provider_of(headers: Mapping[str, str], connection: RepoConnection) -> str:
    if header(headers, EVENT_HEADERS[connection.provider]):
        return connection.provider
    for provider, name in EVENT_HEADERS.items():
        if header(headers, name):
            raise DeliveryError(
                400,
                f"This is a {Provider(provider).label} delivery, but the connection is for "
                f"{connection.get_provider_display()}.",
            )
    raise DeliveryError(400, "Not a GitHub or GitLab webhook: neither X-GitHub-Event nor X-Gitlab-Event is set.")


def read_body(request: HttpRequest) -> bytes:
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise DeliveryError(400, "Content-Length is not a number.") from None
    if declared > MAX_BODY_BYTES:
        raise DeliveryError(413, "The body is larger than 25 MB.")
    body = request.body
    if len(body) > MAX_BODY_BYTES:
        raise DeliveryError(413, "The body is larger than 25 MB.")
    return body


def verify(connection: RepoConnection, provider: str, headers: Mapping[str, str], body: bytes) -> None:
    """Constant-time checks of the connection's secret; raises DeliveryError(401)."""
    secret = connection.webhook_secret()
    if not secret:
        raise DeliveryError(401, "This connection has no webhook secret, so it accepts no deliveries.")
    if provider == Provider.GITHUB:
        signature = header(headers, "X-Hub-Signature-256")
        if not signature:
            if header(headers, "X-Hub-Signature"):
                raise DeliveryError(401, "Only X-Hub-Signature-256 is accepted; SHA-1 signatures are not.")
            raise DeliveryError(401, "X-Hub-Signature-256 is missing: set the webhook's secret in GitHub.")
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "backslashreplace")):
            raise DeliveryError(
                401, "X-Hub-Signature-256 does not match the body signed with this connection's secret."
            )
    else:
        token = header(headers, "X-Gitlab-Token")
        if not token:
            raise DeliveryError(401, "X-Gitlab-Token is missing: set the webhook's secret token in GitLab.")
        if not hmac.compare_digest(secret.encode(), token.encode("utf-8", "backslashreplace")):
            raise DeliveryError(401, "X-Gitlab-Token does not match this connection's secret.")


def decode(body: bytes, content_type: str) -> dict:
    """The JSON object a body carries: application/json, or GitHub's form encoding
    with the JSON in its `payload` field."""
    try:
        media_type, params = parse_header_parameters(content_type or "")
    except ValueError:
        raise DeliveryError(415, "The Content-Type header cannot be read.") from None
    media_type = media_type.lower()
    charset = params.get("charset") or "utf-8"
    try:
        if media_type == "application/json":
            document = body.decode(charset)
        elif media_type == "application/x-www-form-urlencoded":
            fields = parse_qs(body.decode("ascii"), keep_blank_values=True, encoding=charset, errors="strict")
            if len(fields.get("payload", [])) != 1:
                raise DeliveryError(400, "The form-encoded body has no single `payload` field.")
            document = fields["payload"][0]
        else:
            raise DeliveryError(
                415, "Send application/json (or application/x-www-form-urlencoded with a `payload` field)."
            )
    except LookupError:
        raise DeliveryError(415, f"Unknown charset {charset!r}.") from None
    except UnicodeError:
        raise DeliveryError(400, f"The body is not valid {charset} text.") from None
    try:
        payload = json.loads(document)
    except (ValueError, RecursionError):
        raise DeliveryError(400, "The payload is not valid JSON.") from None
    if not isinstance(payload, dict):
        raise DeliveryError(400, "The payload is not a JSON object.")
    return payload


# Reading payload fields.

TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list", dict: "an object"}
MISSING = object()


def field(payload: dict, path: str, kind: type, default=MISSING, *, name: str = ""):
    """payload["a"]["b"] for path "a.b", checked to be of `kind`; absent or null gives
    `default`, or a 400 naming the field when there is none."""
    value = payload
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            if default is MISSING:
                raise DeliveryError(400, f"The payload has no {name or path}.")
            return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise DeliveryError(400, f"The payload's {name or path} must be {TYPE_NAMES[kind]}.")
    return value


def text(value: str, limit: int | None = None) -> str:
    """Free text from a payload, storable anywhere: no NULs or lone surrogates."""
    value = value.replace("\x00", "").encode("utf-8", "replace").decode()
    return value[:limit] if limit else value


def branch_name(value: str, path: str) -> str:
    if not value or len(value) > 255 or BAD_BRANCH.search(value) or text(value) != value:
        raise DeliveryError(400, f"The payload's {path} is not a branch name we can build.")
    return value


def commit_hash(payload: dict, path: str) -> str:
    value = field(payload, path, str)
    if not COMMIT_HASH.fullmatch(value):
        raise DeliveryError(400, f"The payload's {path} is not a commit hash.")
    return value


def changed_files(commits: list) -> tuple[str, ...]:
    """Every path added, modified or removed by the pushed commits, once each."""
    files: dict[str, None] = {}
    for i, commit in enumerate(commits):
        if not isinstance(commit, dict):
            raise DeliveryError(400, f"The payload's commits[{i}] must be an object.")
        for key in ("added", "modified", "removed"):
            paths = field(commit, key, list, [], name=f"commits[{i}].{key}")
            if not all(isinstance(path, str) for path in paths):
                raise DeliveryError(400, f"The payload's commits[{i}].{key} must list paths as strings.")
            files.update(dict.fromkeys(paths))
    return tuple(files)


def check_repository(payload: dict, path: str, connection: RepoConnection) -> None:
    """A delivery about another repository would build the wrong code: the clone
    URL is the connection's."""
    repo_id = str(field(payload, path, int))
    if repo_id != connection.repo_id:
        raise DeliveryError(
            400, f"The delivery is about repository {repo_id}, but this connection is for {connection.repo_id}."
        )


def pushed_branch(payload: dict) -> str | Ignored:
    """The branch a push updated, or why the push builds nothing."""
    ref = field(payload, "ref", str)
    if ref.startswith("refs/tags/"):
        return Ignored(f"Tag {text(ref.removeprefix('refs/tags/'), 255)} pushed: tags do not start builds.")
    if not ref.startswith("refs/heads/"):
        return Ignored(f"{text(ref, 255)} is not a branch: only branch pushes start builds.")
    branch = branch_name(ref.removeprefix("refs/heads/"), "ref")
    if ZERO_COMMIT.fullmatch(field(payload, "after", str)):
        return Ignored(f"Branch {branch} was deleted: nothing to build.")
    return branch


def push_event(
    payload: dict, provider: str, *, head: dict, head_path: str, pusher: str, commit_count: int | None = None
) -> PushEvent | Ignored:
    """A branch push; `head` is the pushed head commit as the provider describes it."""
    branch = pushed_branch(payload)
    if isinstance(branch, Ignored):
        return branch
    commits = field(payload, "commits", list, [])
    return PushEvent(
        provider=provider,
        source=BuildSource.PUSH,
        branch=branch,
        commit_hash=commit_hash(payload, "after"),
        commit_message=text(field(head, "message", str, "", name=f"{head_path}.message")),
        author=text(field(head, "author.name", str, "", name=f"{head_path}.author.name") or pusher, 255),
        changed_files=changed_files(commits),
        commit_count=len(commits) if commit_count is None else commit_count,
    )


# GitHub (docs.github.com/webhooks/webhook-events-and-payloads).


def github_push(payload: dict) -> PushEvent | Ignored:
    return push_event(
        payload,
        Provider.GITHUB,
        head=field(payload, "head_commit", dict, {}),
        head_path="head_commit",
        pusher=field(payload, "pusher.name", str, ""),
    )


GITHUB_PR_ACTIONS = ("opened", "reopened", "synchronize")


def github_pull_request(payload: dict) -> PushEvent | Ignored:
    number = field(payload, "pull_request.number", int)
    action = field(payload, "action", str)
    if action not in GITHUB_PR_ACTIONS:
        return Ignored(
            f"Pull request #{number} {text(action, 100)}: only opened, reopened and synchronize start builds."
        )
    if field(payload, "pull_request.head.repo.id", int, None) != field(payload, "pull_request.base.repo.id", int):
        return Ignored(f"Pull request #{number} comes from a fork: its code is not built with this trigger's secrets.")
    return PushEvent(
        provider=Provider.GITHUB,
        source=BuildSource.PULL_REQUEST,
        branch=branch_name(field(payload, "pull_request.head.ref", str), "pull_request.head.ref"),
        commit_hash=commit_hash(payload, "pull_request.head.sha"),
        # The payload has no commit message; the title is in pull_request.
        author=text(field(payload, "pull_request.user.login", str, ""), 255),
        commit_count=field(payload, "pull_request.commits", int, 0),
        pull_request=PullRequest(
            number=number,
            url=text(field(payload, "pull_request.html_url", str)),
            title=text(field(payload, "pull_request.title", str, "")),
        ),
    )


def parse_github(connection: RepoConnection, event: str, payload: dict) -> PushEvent | Ignored:
    if event == "ping":
        return Ignored("Ping received: GitHub reaches this webhook and the secret matches.")
    if event not in ("push", "pull_request"):
        return Ignored(f"GitHub {text(event, 100)} events do not start builds.")
    check_repository(payload, "repository.id", connection)
    return github_push(payload) if event == "push" else github_pull_request(payload)


# GitLab (docs.gitlab.com/user/project/integrations/webhook_events).


def gitlab_push(payload: dict) -> PushEvent | Ignored:
    after = field(payload, "after", str)
    commits = field(payload, "commits", list, [])
    return push_event(
        payload,
        Provider.GITLAB,
        # Commits are listed oldest first; the head is the one the branch now points at.
        head=next((c for c in commits if isinstance(c, dict) and c.get("id") == after), {}),
        head_path="commits[]",
        pusher=field(payload, "user_name", str, ""),
        # GitLab lists at most 20 commits; total_commits_count has the real number.
        commit_count=field(payload, "total_commits_count", int, len(commits)),
    )


def gitlab_merge_request(payload: dict) -> PushEvent | Ignored:
    number = field(payload, "object_attributes.iid", int)
    action = field(payload, "object_attributes.action", str)
    new_commits = action == "update" and field(payload, "object_attributes.oldrev", str, "")
    if action not in ("open", "reopen") and not new_commits:
        return Ignored(
            f"Merge request !{number} {text(action, 100)}: only open, reopen and update with new commits start builds."
        )
    source_project = field(payload, "object_attributes.source_project_id", int)
    if source_project != field(payload, "object_attributes.target_project_id", int):
        return Ignored(f"Merge request !{number} comes from a fork: its code is not built with this trigger's secrets.")
    return PushEvent(
        provider=Provider.GITLAB,
        source=BuildSource.PULL_REQUEST,
        branch=branch_name(field(payload, "object_attributes.source_branch", str), "object_attributes.source_branch"),
        commit_hash=commit_hash(payload, "object_attributes.last_commit.id"),
        commit_message=text(field(payload, "object_attributes.last_commit.message", str, "")),
        author=text(
            field(payload, "object_attributes.last_commit.author.name", str, "")
            or field(payload, "user.name", str, ""),
            255,
        ),
        pull_request=PullRequest(
            number=number,
            url=text(field(payload, "object_attributes.url", str)),
            title=text(field(payload, "object_attributes.title", str, "")),
        ),
    )


def parse_gitlab(connection: RepoConnection, event: str, payload: dict) -> PushEvent | Ignored:
    if event not in ("Push Hook", "Tag Push Hook", "Merge Request Hook"):
        return Ignored(f"GitLab {text(event, 100)} events do not start builds.")
    check_repository(payload, "project.id", connection)
    return gitlab_merge_request(payload) if event == "Merge Request Hook" else gitlab_push(payload)


PARSERS = {Provider.GITHUB: parse_github, Provider.GITLAB: parse_gitlab}


# Receiving and recording.


def read(connection: RepoConnection, request: HttpRequest) -> PushEvent | Ignored:
    """The verified, parsed delivery; raises DeliveryError."""
    provider = provider_of(request.headers, connection)
    body = read_body(request)
    verify(connection, provider, request.headers, body)
    if len(delivery_id_of(request.headers, provider)) > WebhookDelivery._meta.get_field("delivery_id").max_length:
        raise DeliveryError(400, "The delivery id is longer than 200 characters.")
    payload = decode(body, request.META.get("CONTENT_TYPE", ""))
    return PARSERS[provider](connection, header(request.headers, EVENT_HEADERS[provider]), payload)


def receive(connection: RepoConnection, connection_triggers: list[Trigger], request: HttpRequest) -> tuple[int, dict]:
    """Handles one delivery to the connection's webhook URL and records it. Returns
    the HTTP status and JSON body to answer with; never raises."""
    provider = connection.provider
    delivery = WebhookDelivery(
        repo_connection=connection,
        provider=provider,
        event=text(header(request.headers, EVENT_HEADERS[provider]), 100),
        delivery_id=text(delivery_id_of(request.headers, provider), 200),
    )
    with bind(account_id=connection.account_id, delivery_id=delivery.delivery_id or None):
        try:
            status, body = accept(delivery, read(connection, request), connection_triggers)
        except DeliveryError as error:
            status, body = reject(delivery, error.status, error.reason)
        except Exception:  # whatever arrives, the sender gets a reason, not a traceback
            log.exception("Webhook delivery %r to connection %s failed", delivery.delivery_id, connection.uuid)
            status, body = reject(
                delivery, 503, "Buildsite failed to process this delivery (logged); redeliver it later."
            )
    metrics.webhook_deliveries.labels(body["outcome"]).inc()
    return status, body


def accept(
    delivery: WebhookDelivery, event: PushEvent | Ignored, connection_triggers: list[Trigger]
) -> tuple[int, dict]:
    """Records the delivery and starts its builds, atomically. The record is written
    first and its delivery id is unique: of two concurrent deliveries with the same
    id, the second waits at that INSERT until the first commits, then fails before it
    has made anything."""
    if isinstance(event, Ignored):
        found = triggers.Match(DeliveryOutcome.IGNORED, event.reason, [])
    else:
        found = triggers.match(connection_triggers, event)
    delivery.outcome, delivery.reason = found.outcome, found.reason
    delivery.response_code = 202 if found.triggers else 200
    try:
        builds = record(delivery, found, event)
    except IntegrityError:
        original = claimed(delivery)
        if original is None:
            raise
        return redelivered(delivery, original)
    return delivery.response_code, answer(delivery, [build.build_uuid for build in builds])


def record(delivery: WebhookDelivery, found: triggers.Match, event: PushEvent | Ignored) -> list[Build]:
    """Writes the delivery and the builds it queues, and hands them to the scheduler."""
    if found.triggers and delivery_statement.usable():
        details = triggers.build_details(event)
        builds = [trigger.build_of(**details, delivery=delivery) for trigger in found.triggers]
        older = delivery_statement.record(delivery, builds)
        # After the builds are committed: a crash in between leaves the older builds
        # queued, and they build, which loses nothing.
        for build, older_pks in zip(builds, older, strict=True):
            triggers.supersede(build, older_pks)
        scheduler.enqueue(builds)
        return builds
    with transaction.atomic():
        delivery.save()
        return triggers.start_builds(found, event, delivery) if found.triggers else []


def claimed(delivery: WebhookDelivery) -> WebhookDelivery | None:
    if not delivery.delivery_id:
        return None
    return (
        WebhookDelivery.objects.filter(repo_connection=delivery.repo_connection, delivery_id=delivery.delivery_id)
        .exclude(outcome=DeliveryOutcome.REJECTED)
        .first()
    )


def redelivered(delivery: WebhookDelivery, original: WebhookDelivery) -> tuple[int, dict]:
    """A delivery id handled before: nothing new happens, and the answer is the
    original's. The redelivery is recorded without the id (which the original holds)."""
    WebhookDelivery.objects.create(
        repo_connection=delivery.repo_connection,
        provider=delivery.provider,
        event=delivery.event,
        response_code=200,
        outcome=DeliveryOutcome.IGNORED,
        reason=f"Redelivery of {delivery.delivery_id}, first received {original.received_on.isoformat()}.",
    )
    build_uuids = list(original.builds.values_list("build_uuid", flat=True))
    return 200, {**answer(original, build_uuids), "redelivery": True}


def reject(delivery: WebhookDelivery, status: int, reason: str) -> tuple[int, dict]:
    """Records a refused delivery. A rejected record never claims its delivery id,
    so a forged request carrying a real id cannot block the real delivery."""
    delivery.outcome, delivery.reason, delivery.response_code = DeliveryOutcome.REJECTED, reason, status
    delivery.pk = None  # a save rolled back with its transaction left a pk but no row
    try:
        delivery.save()
    except Exception:  # the answer matters more than the record
        log.exception("Could not record a rejected webhook delivery")
    return status, answer(delivery, [])


def answer(delivery: WebhookDelivery, build_uuids: list) -> dict:
    return {
        "outcome": delivery.outcome,
        "reason": delivery.reason,
        "delivery_id": delivery.delivery_id,
        "builds": [str(build_uuid) for build_uuid in build_uuids],
    }
