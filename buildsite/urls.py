from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from buildsite import health
from buildsite.metrics import metrics_view

handler500 = "buildsite.errors.server_error"

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]
