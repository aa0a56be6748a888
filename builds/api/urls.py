"""/client/v4/ paths: Cloudflare's under accounts/<account_id>/builds/, the OpenAPI
schema and its docs page."""

from django.urls import include, path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from builds.api import views


class Hex32Converter:
    """Account ids and worker tags. Anything else is a 404 before a query is made."""

    regex = "[0-9a-f]{32}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class VariableNameConverter(Hex32Converter):
    regex = "[A-Za-z_][A-Za-z0-9_]*"


register_converter(Hex32Converter, "hex32")
register_converter(VariableNameConverter, "variable")

builds_patterns = [
    path("account/limits", views.AccountLimitsView.as_view()),
    path("builds", views.BuildsByVersionView.as_view()),
    path("builds/latest", views.LatestBuildsView.as_view()),
    path("builds/<uuid:build_uuid>", views.BuildDetailView.as_view()),
    path("builds/<uuid:build_uuid>/cancel", views.BuildCancelView.as_view()),
    path("builds/<uuid:build_uuid>/retry", views.BuildRetryView.as_view()),
    path("builds/<uuid:build_uuid>/logs", views.BuildLogsView.as_view()),
    path("workers", views.WorkerListView.as_view()),
    path("workers/<hex32:external_script_id>", views.WorkerDetailView.as_view()),
    path("workers/<hex32:external_script_id>/builds", views.WorkerBuildsView.as_view()),
    path("workers/<hex32:external_script_id>/triggers", views.WorkerTriggersView.as_view()),
    path("workers/<hex32:external_script_id>/deploy_hooks", views.WorkerDeployHooksView.as_view()),
    path(
        "workers/<hex32:external_script_id>/deploy_hooks/<uuid:deploy_hook_uuid>",
        views.DeployHookDetailView.as_view(),
    ),
    path("triggers", views.TriggerListView.as_view()),
    path("triggers/<uuid:trigger_uuid>", views.TriggerDetailView.as_view()),
    path("triggers/<uuid:trigger_uuid>/builds", views.TriggerBuildsView.as_view()),
    path("triggers/<uuid:trigger_uuid>/purge_build_cache", views.TriggerPurgeCacheView.as_view()),
    path("triggers/<uuid:trigger_uuid>/environment_variables", views.TriggerVariablesView.as_view()),
    path(
        "triggers/<uuid:trigger_uuid>/environment_variables/<variable:environment_variable_key>",
        views.TriggerVariableDetailView.as_view(),
    ),
    path("repos/connections", views.ConnectionListView.as_view()),
    path("repos/connections/<uuid:repo_connection_uuid>", views.ConnectionDetailView.as_view()),
    path("repos/connections/<uuid:repo_connection_uuid>/rotate_secret", views.ConnectionRotateSecretView.as_view()),
]

urlpatterns = [
    path("accounts/<hex32:account_id>/builds/", include(builds_patterns)),
    path("schema", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
