"""Account pages of the dashboard: where a user lands, members and roles, API tokens.

Roles: admins manage members below owner; only owners grant or take away the owner
role; an account always keeps at least one owner. Every member manages their own API
tokens; those who manage members also see and revoke everyone else's."""

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.forms import AddMemberForm, RoleForm, TokenForm
from accounts.models import ApiToken, Membership, Role
from accounts.permissions import Action, membership_of, membership_or_404, role_allows
from builds.views import member, page_context


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The account the user last worked in, their only account, or a choice."""
    last = request.session.get("account_id")
    if last and membership_of(request.user, last):
        return redirect("workers", last)
    memberships = list(Membership.objects.filter(user=request.user).select_related("account"))
    if len(memberships) == 1:
        return redirect("workers", memberships[0].account_id)
    return render(request, "dashboard/home.html", {"memberships": memberships})


def action_for_roles(*roles: str) -> Action:
    """Touching the owner role, given or taken, is for owners only."""
    return Action.MANAGE_OWNERS if Role.OWNER in roles else Action.MANAGE_MEMBERS


def is_last_owner(membership: Membership) -> bool:
    return (
        membership.role == Role.OWNER
        and not Membership.objects.filter(account_id=membership.account_id, role=Role.OWNER)
        .exclude(pk=membership.pk)
        .exists()
    )


def render_members(request, membership, *, form=None, status=200) -> HttpResponse:
    members = membership.account.memberships.select_related("user").order_by("user__username")
    roles = [(value, label) for value, label in Role.choices if role_allows(membership.role, action_for_roles(value))]
    context = page_context(
        membership, nav="members", members=members, form=form or AddMemberForm(account=membership.account), roles=roles
    )
    return render(request, "dashboard/members.html", context, status=status)


@login_required
def members(request: HttpRequest, account_id: str) -> HttpResponse:
    membership = member(request, account_id)
    if request.method != "POST":
        return render_members(request, membership)
    membership_or_404(request.user, account_id, action_for_roles(request.POST.get("role", "")))
    form = AddMemberForm(request.POST, account=membership.account)
    if not form.is_valid():
        return render_members(request, membership, form=form, status=400)
    user = form.cleaned_data["user"]
    Membership.objects.create(account=membership.account, user=user, role=form.cleaned_data["role"])
    messages.success(request, f"{user.get_username()} added.")
    return redirect("members", account_id)


@login_required
@require_POST
def member_role(request: HttpRequest, account_id: str, membership_id: int) -> HttpResponse:
    membership = member(request, account_id, Action.MANAGE_MEMBERS)
    target = get_object_or_404(Membership, account=membership.account, pk=membership_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a valid role.")
        return redirect("members", account_id)
    role = form.cleaned_data["role"]
    membership_or_404(request.user, account_id, action_for_roles(target.role, role))
    if role != Role.OWNER and is_last_owner(target):
        messages.error(request, "An account needs an owner: make someone else owner first.")
        return redirect("members", account_id)
    target.role = role
    target.save(update_fields=["role"])
    messages.success(request, f"{target.user.get_username()} is now {target.get_role_display()}.")
    return redirect("members", account_id)


@login_required
@require_POST
def member_remove(request: HttpRequest, account_id: str, membership_id: int) -> HttpResponse:
    membership = member(request, account_id, Action.MANAGE_MEMBERS)
    target = get_object_or_404(Membership, account=membership.account, pk=membership_id)
    membership_or_404(request.user, account_id, action_for_roles(target.role))
    if is_last_owner(target):
        messages.error(request, "An account needs an owner: the last owner cannot be removed.")
        return redirect("members", account_id)
    target.delete()
    messages.success(request, f"{target.user.get_username()} removed.")
    return redirect("members", account_id)


def visible_tokens(membership: Membership):
    tokens = membership.account.api_tokens.select_related("user").order_by("-created_on")
    if not role_allows(membership.role, Action.MANAGE_MEMBERS):
        tokens = tokens.filter(user=membership.user)
    return tokens


@login_required
def tokens(request: HttpRequest, account_id: str) -> HttpResponse:
    membership = member(request, account_id)
    form = TokenForm(request.POST or None)
    plaintext = ""
    status = 200
    if request.method == "POST":
        if form.is_valid():
            days = form.cleaned_data["expires_in_days"]
            expires_on = timezone.now() + timedelta(days=days) if days else None
            _, plaintext = ApiToken.issue(request.user, membership.account, form.cleaned_data["name"], expires_on)
            form = TokenForm()
            status = 201
        else:
            status = 400
    context = page_context(membership, nav="tokens", tokens=visible_tokens(membership), form=form, plaintext=plaintext)
    return render(request, "dashboard/tokens.html", context, status=status)


@login_required
@require_POST
def token_revoke(request: HttpRequest, account_id: str, token_id: int) -> HttpResponse:
    membership = member(request, account_id)
    token = get_object_or_404(visible_tokens(membership), pk=token_id)
    token.revoke()
    messages.success(request, f"Token {token.name} revoked.")
    return redirect("tokens", account_id)
