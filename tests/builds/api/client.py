"""Helpers for API tests: a caller with a token, the envelope checks, a small world."""

import json
from dataclasses import dataclass
from urllib.parse import urlencode

from django.test import Client

from builds import cache, logs
from builds.models import DeployHook, EnvironmentVariable
from tests.factories import make_build, make_connection, make_trigger, make_worker


@dataclass
class Api:
    """Calls the API as one user with an API token of `token_account`, on the URLs of
    `account` (by default the same): api("GET", "workers", page=2)."""

    client: Client
    account: object
    token: str

    def base(self, account=None) -> str:
        return f"/client/v4/accounts/{(account or self.account).id}/builds/"

    def __call__(self, method: str, path: str, body=None, *, account=None, headers=None, **params):
        url = self.base(account) + path + ("?" + urlencode(params) if params else "")
        data = json.dumps(body) if body is not None else ""
        extra = {"HTTP_AUTHORIZATION": f"Bearer {self.token}", **(headers or {})}
        return self.client.generic(method, url, data, content_type="application/json", **extra)


@dataclass
class World:
    worker: object
    connection: object
    spare_connection: object  # no trigger uses it, so it can be deleted
    trigger: object
    hook: object
    build: object


def make_world(account, name: str = "site") -> World:
    worker = make_worker(account, name)
    connection = make_connection(account)
    trigger = make_trigger(worker, connection)
    variable = EnvironmentVariable(trigger=trigger, name="TOKEN")
    variable.set_value("hunter2", is_secret=True)
    variable.save()
    EnvironmentVariable.objects.create(trigger=trigger, name="MODE", value="production")
    hook = DeployHook.objects.create(worker=worker, trigger=trigger, name="nightly", branch="main")
    build = make_build(trigger)
    logs.append(build, [("stdout", "hello")])
    cache.cache_dir(trigger).mkdir(parents=True)
    (cache.cache_dir(trigger) / "node_modules.tar").write_bytes(b"cached")
    return World(worker, connection, make_connection(account), trigger, hook, build)


def ok(response):
    """The envelope of a successful answer; its result."""
    body = response.json()
    assert response.status_code == 200, body
    assert body["success"] is True and body["errors"] == [] and body["messages"] == []
    return body["result"]


def failed(response, status: int) -> list[dict]:
    """The envelope of an error answer; its errors."""
    body = response.json()
    assert response.status_code == status, body
    assert body["success"] is False and body["result"] is None and body["errors"]
    assert all(isinstance(e["code"], int) and e["message"] for e in body["errors"])
    return body["errors"]
