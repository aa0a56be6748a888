from django.contrib import admin

from accounts.models import Account, ApiToken, Membership


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ["name", "id", "concurrency_limit", "created_on"]
    search_fields = ["name", "id"]
    readonly_fields = ["id", "created_on"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "account", "role", "created_on"]
    list_filter = ["role"]
    search_fields = ["user__username", "account__name", "account__id"]
    autocomplete_fields = ["user", "account"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are issued with `manage.py createtoken` or the dashboard, which show the
    plaintext once; the admin only lists and revokes them."""

    list_display = ["name", "prefix", "user", "account", "created_on", "last_used_on", "expires_on", "revoked_on"]
    list_filter = ["revoked_on"]
    search_fields = ["name", "prefix", "user__username", "account__name"]
    readonly_fields = ["user", "account", "name", "prefix", "created_on", "last_used_on", "expires_on", "revoked_on"]
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset) -> None:
        for token in queryset:
            token.revoke()
