from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import views

A = "accounts/<str:account_id>/"

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="login"), name="logout"),
    path(A + "members/", views.members, name="members"),
    path(A + "members/<int:membership_id>/role/", views.member_role, name="member_role"),
    path(A + "members/<int:membership_id>/remove/", views.member_remove, name="member_remove"),
    path(A + "tokens/", views.tokens, name="tokens"),
    path(A + "tokens/<int:token_id>/revoke/", views.token_revoke, name="token_revoke"),
]
