"""Fixtures for API tests: users in each role, an API caller per user, and a small
world (worker, connection, trigger, variables, deploy hook, build) in each account."""

import pytest
from django.core.cache import cache

from accounts.models import ApiToken, Role
from tests.builds.api.client import Api, World, make_world
from tests.factories import add_member, make_user


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    # Rate-limit counters live in the cache, which outlives a test's database.
    cache.clear()


@pytest.fixture(autouse=True)
def _workspaces(settings, tmp_path):
    settings.BUILDSITE_WORKSPACE_DIR = tmp_path / "workspaces"


@pytest.fixture
def admin(account):
    user = make_user("dana")
    add_member(user, account, Role.ADMIN)
    return user


@pytest.fixture
def reader(account):
    user = make_user("erin")
    add_member(user, account, Role.READ_ONLY)
    return user


@pytest.fixture
def api_for(client, account):
    def make(user, token_account=None) -> Api:
        _, token = ApiToken.issue(user, token_account or account, "tests")
        return Api(client, account, token)

    return make


@pytest.fixture
def api(api_for, owner) -> Api:
    return api_for(owner)


@pytest.fixture
def world(account) -> World:
    return make_world(account)


@pytest.fixture
def other_world(other_account) -> World:
    return make_world(other_account, "elsewhere")
