from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("client/v4/", include("builds.api.urls")),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]

# An unknown URL under the API (/client/v4/) answers in the API's envelope.
handler404 = "builds.api.envelope.not_found"
