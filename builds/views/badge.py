"""The public status badge of a worker's branch: `/badge/<tag>.svg?branch=main`. Off by
default; a worker without `badge_enabled` answers 404 exactly like one that does not
exist, so a tag cannot be probed."""

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_GET

from builds.models import BuildOutcome, BuildStatus, Worker

LABELS = {
    BuildOutcome.SUCCESS: ("passing", "#2da44e"),
    BuildOutcome.FAIL: ("failing", "#cf222e"),
    BuildOutcome.TERMINATED: ("terminated", "#bc4c00"),
    BuildOutcome.CANCELLED: ("cancelled", "#6e7781"),
    BuildOutcome.SKIPPED: ("skipped", "#6e7781"),
}
BUILDING = ("building", "#0969da")
UNKNOWN = ("no builds", "#6e7781")


def text_width(text: str) -> int:
    # Verdana 11px averages about 7px a character; close enough for a badge.
    return 7 * len(text) + 10


@require_GET
def badge(request: HttpRequest, tag: str) -> HttpResponse:
    worker = Worker.objects.filter(tag=tag, badge_enabled=True).first()
    if worker is None:
        raise Http404("No such badge.")
    branch = request.GET.get("branch") or "main"
    build = worker.builds.filter(branch=branch).exclude(build_outcome=BuildOutcome.SKIPPED).first()
    if build is None:
        message, color = UNKNOWN
    elif build.status != BuildStatus.STOPPED:
        message, color = BUILDING
    else:
        message, color = LABELS[build.build_outcome]
    label = "build"
    left, right = text_width(label), text_width(message)
    context = {
        "label": label,
        "message": message,
        "color": color,
        "left": left,
        "right": right,
        "width": left + right,
        "label_x": left * 5,
        "message_x": (left + right / 2) * 10,
        "label_len": (left - 10) * 10,
        "message_len": (right - 10) * 10,
    }
    response = render(request, "dashboard/badge.svg", context, content_type="image/svg+xml")
    # README badges are fetched through caching proxies; they must revalidate.
    patch_cache_control(response, no_cache=True, max_age=0)
    return response
