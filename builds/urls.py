from django.urls import path

from builds.views import badge, configure, pages

A = "accounts/<str:account_id>/"

urlpatterns = [
    path(A, pages.workers, name="workers"),
    path(A + "workers/new/", pages.worker_create, name="worker_create"),
    path(A + "workers/<str:tag>/", pages.worker_detail, name="worker_detail"),
    path(A + "workers/<str:tag>/row/", pages.worker_row, name="worker_row"),
    path(A + "workers/<str:tag>/builds/new/", pages.build_start, name="build_start"),
    path(A + "workers/<str:tag>/settings/", configure.worker_settings, name="worker_settings"),
    path(A + "workers/<str:tag>/triggers/new/", configure.trigger_create, name="trigger_create"),
    path(A + "workers/<str:tag>/deploy-hooks/new/", configure.deploy_hook_create, name="deploy_hook_create"),
    path(A + "deploy-hooks/<uuid:hook_uuid>/delete/", configure.deploy_hook_delete, name="deploy_hook_delete"),
    path(A + "builds/<uuid:build_uuid>/", pages.build_detail, name="build_detail"),
    path(A + "builds/<uuid:build_uuid>/row/", pages.build_row, name="build_row"),
    path(A + "builds/<uuid:build_uuid>/summary/", pages.build_summary, name="build_summary"),
    path(A + "builds/<uuid:build_uuid>/log.txt", pages.build_log, name="build_log"),
    path(A + "builds/<uuid:build_uuid>/cancel/", pages.build_cancel, name="build_cancel"),
    path(A + "builds/<uuid:build_uuid>/retry/", pages.build_retry, name="build_retry"),
    path(A + "triggers/<uuid:trigger_uuid>/", configure.trigger_edit, name="trigger_edit"),
    path(A + "triggers/<uuid:trigger_uuid>/delete/", configure.trigger_delete, name="trigger_delete"),
    path(A + "triggers/<uuid:trigger_uuid>/variables/", configure.variable_save, name="variable_save"),
    path(
        A + "triggers/<uuid:trigger_uuid>/variables/<int:variable_id>/delete/",
        configure.variable_delete,
        name="variable_delete",
    ),
    path(A + "repositories/", configure.connections, name="connections"),
    path(A + "repositories/<uuid:connection_uuid>/", configure.connection_detail, name="connection_detail"),
    path(A + "repositories/<uuid:connection_uuid>/rotate/", configure.connection_rotate, name="connection_rotate"),
    path(A + "repositories/<uuid:connection_uuid>/delete/", configure.connection_delete, name="connection_delete"),
    path("badge/<str:tag>.svg", badge.badge, name="badge"),
]
