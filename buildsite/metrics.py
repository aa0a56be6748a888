"""Prometheus metrics. Counters and histograms are written by whichever process sees
the event (daphne, q2 workers) into PROMETHEUS_MULTIPROC_DIR and summed at scrape
time; gauges of build counts are read from the database at scrape time, since a
build starts in one process and ends in another."""

import hmac
import ipaddress

from django.conf import settings
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600)
WAIT_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)

builds_stopped = Counter("buildsite_builds_total", "Builds that stopped, by outcome.", ["outcome"])
queue_wait = Histogram("buildsite_build_queue_wait_seconds", "From queued to running.", buckets=WAIT_BUCKETS)
build_duration = Histogram("buildsite_build_duration_seconds", "From running to stopped.", buckets=DURATION_BUCKETS)
webhook_deliveries = Counter("buildsite_webhook_deliveries_total", "Webhook deliveries, by outcome.", ["outcome"])
log_lines_stored = Counter("buildsite_log_lines_stored_total", "Build log lines stored.")
websocket_clients = Gauge("buildsite_websocket_clients", "Websocket clients connected.", multiprocess_mode="livesum")


class BuildCountsCollector:
    def collect(self):
        from builds.models import Build, BuildStatus

        counts = dict(
            Build.objects.exclude(status=BuildStatus.STOPPED)
            .values_list("status")
            .annotate(n=Count("id"))
            .values_list("status", "n")
        )
        family = GaugeMetricFamily("buildsite_builds", "Builds not yet stopped, by status.", labels=["status"])
        for status in (BuildStatus.QUEUED, BuildStatus.INITIALIZING, BuildStatus.RUNNING):
            family.add_metric([status], counts.get(status, 0))
        yield family


def build_moved(build) -> None:
    """Called after commit of every build transition."""
    if build.status == "running" and build.running_on:
        queue_wait.observe((build.running_on - build.created_on).total_seconds())
    elif build.status == "stopped":
        builds_stopped.labels(build.build_outcome).inc()
        if build.running_on and build.stopped_on:
            build_duration.observe((build.stopped_on - build.running_on).total_seconds())


def may_scrape(request: HttpRequest) -> bool:
    token = settings.BUILDSITE_METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if hmac.compare_digest(given.encode(), token.encode()):
            return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in settings.BUILDSITE_METRICS_ALLOW)


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not may_scrape(request):
        return HttpResponse("Metrics are restricted; see README (BUILDSITE_METRICS_*).\n", status=403)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(BuildCountsCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
