"""Presentation helpers for the dashboard templates: durations, commit links, phases,
status badges and the account switcher."""

import re
from datetime import datetime
from urllib.parse import urlsplit

from django import template
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html

from accounts.models import Membership
from builds.models import Build, BuildStatus, Provider

register = template.Library()

SCP_LIKE = re.compile(r"^[\w.-]+@(?P<host>[\w.-]+):(?P<path>.+)$")


def repo_web_url(clone_url: str) -> str | None:
    """The repository's web page for an HTTPS or SSH clone URL; None for anything else
    (a file:// URL has no web page). Credentials in the URL are never carried over."""
    match = SCP_LIKE.match(clone_url)
    if match:
        host, path = match["host"], match["path"]
    else:
        parts = urlsplit(clone_url)
        if parts.scheme not in {"http", "https", "ssh", "git"} or not parts.hostname:
            return None
        host, path = parts.hostname, parts.path
    path = path.strip("/").removesuffix(".git")
    return f"https://{host}/{path}" if path else None


@register.filter
def commit_url(build: Build) -> str | None:
    base = repo_web_url(build.clone_url)
    if not base or not build.commit_hash:
        return None
    separator = "/-/commit/" if build.provider_type == Provider.GITLAB else "/commit/"
    return f"{base}{separator}{build.commit_hash}"


@register.filter
def first_line(text: str) -> str:
    return (text or "").strip().split("\n", 1)[0]


def format_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {seconds}s"
    return f"{seconds}s"


def elapsed(started: datetime | None, stopped: datetime | None):
    """A finished span as text; a running one as an element the page's script ticks."""
    if started is None:
        return ""
    if stopped is not None:
        return format_seconds((stopped - started).total_seconds())
    return format_html(
        '<span data-elapsed-since="{}">{}</span>',
        started.isoformat(),
        format_seconds((timezone.now() - started).total_seconds()),
    )


@register.simple_tag
def build_duration(build: Build):
    """Time from leaving the queue to stopping; builds stopped in the queue took none."""
    return elapsed(build.initializing_on or build.running_on, build.stopped_on if build.is_finished else None)


@register.simple_tag
def queued_for(build: Build):
    return elapsed(build.created_on, build.initializing_on or build.stopped_on)


CANONICAL_PHASES = ("clone", "build", "deploy")


@register.simple_tag
def phase_rows(build: Build) -> list[dict]:
    """The phases the build recorded, then (while it runs) those still to come."""
    rows = []
    for phase in build.phases or []:
        started = parse_datetime(phase.get("started_on") or "")
        stopped = parse_datetime(phase.get("stopped_on") or "")
        exit_code = phase.get("exit_code")
        if stopped is None:
            state = "running" if not build.is_finished else build.build_outcome or "stopped"
        else:
            state = "success" if exit_code in (0, None) else "fail"
        rows.append(
            {
                "name": phase.get("name", "?"),
                "state": state,
                "exit_code": exit_code,
                "duration": elapsed(started, stopped or (build.stopped_on if build.is_finished else None)),
            }
        )
    if not build.is_finished:
        seen = {row["name"] for row in rows}
        rows += [{"name": name, "state": "pending", "duration": ""} for name in CANONICAL_PHASES if name not in seen]
    return rows


@register.inclusion_tag("dashboard/_status.html")
def status_badge(build: Build | None) -> dict:
    if build is None:
        return {"label": "no builds", "kind": "none"}
    label = build.build_outcome if build.status == BuildStatus.STOPPED else build.status
    return {"label": label, "kind": label}


@register.inclusion_tag("dashboard/_account_switcher.html", takes_context=True)
def account_switcher(context) -> dict:
    user = context["request"].user
    current = context.get("account")
    memberships = Membership.objects.filter(user=user).select_related("account").order_by("account__name")
    return {"memberships": memberships, "current": current}
