"""Websocket URL routes."""

from django.urls import path

from builds import consumers

websocket_urlpatterns: list = []
websocket_urlpatterns += [
    path("ws/accounts/<str:account_id>/builds/<uuid:build_uuid>/", consumers.BuildConsumer.as_asgi()),
    path("ws/accounts/<str:account_id>/", consumers.AccountConsumer.as_asgi()),
    path("ws/admin/builds/<uuid:build_uuid>/", consumers.AdminBuildConsumer.as_asgi()),
]
