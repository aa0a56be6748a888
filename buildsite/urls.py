from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from builds import receivers

urlpatterns = [
    path("webhooks/<str:connection_uuid>", receivers.webhook, name="webhook"),
    path("client/v4/workers/builds/deploy_hooks/<str:hook_id>", receivers.deploy_hook, name="deploy-hook"),
    path("admin/", admin.site.urls),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]
