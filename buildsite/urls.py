from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from buildsite import health
from buildsite.metrics import metrics_view

handler500 = "buildsite.errors.server_error"

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("client/v4/", include("builds.api.urls")),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]

# An unknown URL under the API (/client/v4/) answers in the API's envelope.
handler404 = "builds.api.envelope.not_found"
