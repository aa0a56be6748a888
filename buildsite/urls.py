from django.contrib import admin
from django.urls import include, path

from accounts.views import home
from builds import receivers
from buildsite import health
from buildsite.metrics import metrics_view

handler500 = "buildsite.errors.server_error"

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("webhooks/<str:connection_uuid>", receivers.webhook, name="webhook"),
    path("client/v4/workers/builds/deploy_hooks/<str:hook_id>", receivers.deploy_hook, name="deploy-hook"),
    path("admin/", admin.site.urls),
    path("client/v4/", include("builds.api.urls")),
    path("", home, name="home"),
    path("", include("accounts.urls")),
    path("", include("builds.urls")),
]

# An unknown URL under the API (/client/v4/) answers in the API's envelope.
handler404 = "builds.api.envelope.not_found"
