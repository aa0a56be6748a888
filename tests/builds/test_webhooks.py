import copy
import json
import uuid
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builds.models import Build, BuildSource, BuildStatus, DeliveryOutcome, Trigger, WebhookDelivery
from builds.webhooks import EVENT_HEADERS
from tests.builds import payloads
from tests.builds.payloads import SHA_AFTER, deliver
from tests.builds.running import at_once
from tests.factories import make_connection, make_trigger, make_worker


@pytest.fixture
def github(account):
    connection = make_connection(account, provider="github")
    make_trigger(make_worker(account, "site"), connection, production_branch="main")
    return connection


@pytest.fixture
def gitlab(account):
    connection = make_connection(account, provider="gitlab", clone_url="https://gitlab.example.com/acme/site.git")
    make_trigger(make_worker(account, "lab"), connection, production_branch="main")
    return connection


def repo(connection) -> int:
    return int(connection.repo_id)


def only_delivery(connection) -> WebhookDelivery:
    (delivery,) = WebhookDelivery.objects.filter(repo_connection=connection)
    return delivery


def assert_queued(response, connection, **expected) -> Build:
    """One build queued by the response, recorded with its delivery."""
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["outcome"] == "queued" and len(body["builds"]) == 1
    build = Build.objects.get()
    assert str(build.build_uuid) == body["builds"][0]
    assert build.status == BuildStatus.QUEUED
    for name, value in expected.items():
        assert getattr(build, name) == value, name
    delivery = only_delivery(connection)
    assert (delivery.outcome, delivery.response_code) == (DeliveryOutcome.QUEUED, 202)
    assert list(delivery.builds.all()) == [build]
    assert delivery.delivery_id == body["delivery_id"] != ""
    return build


def assert_not_built(response, connection, status: int, outcome: str, reason: str) -> WebhookDelivery:
    """Nothing built, the answer says why, and the delivery is recorded saying the same."""
    assert response.status_code == status, response.json()
    body = response.json()
    assert body["outcome"] == outcome and body["builds"] == []
    assert reason in body["reason"], body["reason"]
    assert not Build.objects.exists()
    delivery = only_delivery(connection)
    assert (delivery.outcome, delivery.response_code, delivery.reason) == (outcome, status, body["reason"])
    assert not delivery.builds.exists()
    return delivery


# Accepted deliveries.


def test_github_push_to_the_production_branch_queues_a_production_build(client, github):
    commits = [payloads.github_commit(SHA_AFTER, "Fix the header\n\nLonger text", modified=["src/header.js"])]
    response = deliver(client, github, payloads.github_push(repo(github), commits=commits), delivery_id="d-1")
    build = assert_queued(
        response,
        github,
        branch="main",
        commit_hash=SHA_AFTER,
        commit_message="Fix the header\n\nLonger text",
        author="Monalisa Octocat",
        source=BuildSource.PUSH,
        is_production=True,
        deploy_command="echo deploy",
        pull_request=None,
    )
    delivery = only_delivery(github)
    assert (delivery.provider, delivery.event, delivery.delivery_id) == ("github", "push", "d-1")
    assert build.trigger.trigger_name in delivery.reason


def test_github_push_to_another_branch_queues_a_preview_build(client, github):
    payload = payloads.github_push(repo(github), ref="refs/heads/feature/login")
    assert_queued(
        deliver(client, github, payload),
        github,
        branch="feature/login",
        is_production=False,
        deploy_command="npx wrangler versions upload",
    )


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=utf-8"]
)
def test_it_accepts_form_encoded_github_bodies(client, github, content_type):
    commits = [payloads.github_commit(SHA_AFTER, "Ünïcode & ampersands = fine")]
    payload = payloads.github_push(repo(github), commits=commits)
    response = deliver(client, github, payload, form=True, content_type=content_type)
    assert_queued(response, github, commit_message="Ünïcode & ampersands = fine")


def test_it_accepts_json_with_a_charset_parameter(client, github):
    response = deliver(
        client, github, payloads.github_push(repo(github)), content_type="application/json; charset=UTF-8"
    )
    assert_queued(response, github, branch="main")


@pytest.mark.parametrize("action", ["opened", "reopened", "synchronize"])
def test_github_pull_request_queues_a_preview_build_of_the_head_commit(client, github, action):
    payload = payloads.github_pull_request(repo(github), action=action, number=42, head_ref="main")
    response = deliver(client, github, payload, event="pull_request")
    assert_queued(
        response,
        github,
        # A pull request never deploys to production, even from the production branch.
        branch="main",
        commit_hash=SHA_AFTER,
        source=BuildSource.PULL_REQUEST,
        is_production=False,
        deploy_command="npx wrangler versions upload",
        author="Codertocat",
        pull_request={"number": 42, "url": "https://github.com/acme/site/pull/42", "title": "Add a login page"},
    )


def test_gitlab_push_queues_a_build_of_the_head_commit(client, gitlab):
    response = deliver(client, gitlab, payloads.gitlab_push(repo(gitlab)), delivery_id="gl-1")
    assert_queued(
        response,
        gitlab,
        branch="main",
        commit_hash=SHA_AFTER,
        commit_message="fixed readme",
        author="GitLab dev user",
        source=BuildSource.PUSH,
        is_production=True,
    )
    delivery = only_delivery(gitlab)
    assert (delivery.provider, delivery.event, delivery.delivery_id) == ("gitlab", "Push Hook", "gl-1")


@pytest.mark.parametrize("action, oldrev", [("open", None), ("reopen", None), ("update", payloads.SHA_BEFORE)])
def test_gitlab_merge_request_queues_a_preview_build(client, gitlab, action, oldrev):
    payload = payloads.gitlab_merge_request(repo(gitlab), action=action, oldrev=oldrev, iid=7)
    response = deliver(client, gitlab, payload, event="Merge Request Hook")
    assert_queued(
        response,
        gitlab,
        branch="ms-viewport",
        commit_hash=SHA_AFTER,
        commit_message="fixed readme",
        source=BuildSource.PULL_REQUEST,
        is_production=False,
        pull_request={
            "number": 7,
            "url": "https://gitlab.example.com/acme/site/-/merge_requests/7",
            "title": "MS-Viewport",
        },
    )


def test_gitlab_without_idempotency_key_uses_the_event_uuid(client, gitlab):
    payload = payloads.gitlab_push(repo(gitlab))
    first = deliver(client, gitlab, payload, delivery_id="evt-9", headers={"Idempotency-Key": None})
    assert_queued(first, gitlab)
    again = deliver(client, gitlab, payload, delivery_id="evt-9", headers={"Idempotency-Key": None})
    assert again.status_code == 200 and again.json()["builds"] == first.json()["builds"]
    assert Build.objects.count() == 1


# Recorded and ignored.


def test_github_ping_answers_200_and_is_recorded(client, github):
    response = deliver(client, github, payloads.github_ping(repo(github)), event="ping")
    delivery = assert_not_built(response, github, 200, DeliveryOutcome.IGNORED, "Ping received")
    assert delivery.event == "ping"


@pytest.mark.parametrize(
    "provider, payload, event, reason",
    [
        ("github", payloads.github_tag_push, "push", "Tag v1.0.0 pushed"),
        ("github", payloads.github_branch_deletion, "push", "Branch feature/old was deleted"),
        ("gitlab", payloads.gitlab_tag_push, "Tag Push Hook", "Tag v1.0.0 pushed"),
        ("gitlab", payloads.gitlab_branch_deletion, "Push Hook", "Branch feature/old was deleted"),
    ],
)
def test_tag_pushes_and_branch_deletions_are_recorded_and_ignored(client, request, provider, payload, event, reason):
    connection = request.getfixturevalue(provider)
    response = deliver(client, connection, payload(repo(connection)), event=event)
    assert_not_built(response, connection, 200, DeliveryOutcome.IGNORED, reason)


@pytest.mark.parametrize("action", ["closed", "edited", "labeled", "ready_for_review", "assigned"])
def test_other_pull_request_actions_are_ignored(client, github, action):
    payload = payloads.github_pull_request(repo(github), action=action)
    response = deliver(client, github, payload, event="pull_request")
    assert_not_built(response, github, 200, DeliveryOutcome.IGNORED, f"Pull request #42 {action}")


@pytest.mark.parametrize("action, oldrev", [("update", None), ("close", None), ("merge", None), ("approved", None)])
def test_other_merge_request_actions_are_ignored(client, gitlab, action, oldrev):
    payload = payloads.gitlab_merge_request(repo(gitlab), action=action, oldrev=oldrev)
    response = deliver(client, gitlab, payload, event="Merge Request Hook")
    assert_not_built(response, gitlab, 200, DeliveryOutcome.IGNORED, f"Merge request !7 {action}")


def test_pull_requests_from_forks_are_not_built(client, github, gitlab):
    response = deliver(client, github, payloads.github_pull_request(repo(github), fork=True), event="pull_request")
    assert_not_built(response, github, 200, DeliveryOutcome.IGNORED, "comes from a fork")
    mr = payloads.gitlab_merge_request(repo(gitlab), fork=True)
    response = deliver(client, gitlab, mr, event="Merge Request Hook")
    assert_not_built(response, gitlab, 200, DeliveryOutcome.IGNORED, "comes from a fork")


@pytest.mark.parametrize("provider, event", [("github", "issues"), ("github", "star"), ("gitlab", "Note Hook")])
def test_events_that_build_nothing_are_ignored(client, request, provider, event):
    connection = request.getfixturevalue(provider)
    response = deliver(client, connection, {"action": "created"}, event=event)
    assert_not_built(response, connection, 200, DeliveryOutcome.IGNORED, "events do not start builds")


# Idempotency.


def test_a_redelivery_builds_nothing_and_answers_with_the_original_result(client, github):
    payload = payloads.github_push(repo(github))
    first = deliver(client, github, payload, delivery_id="same-id")
    build = assert_queued(first, github)
    again = deliver(client, github, payload, delivery_id="same-id")
    assert again.status_code == 200
    assert again.json() == {**first.json(), "redelivery": True}
    assert list(Build.objects.all()) == [build]
    original, redelivery = WebhookDelivery.objects.order_by("received_on")
    assert original.delivery_id == "same-id" and list(original.builds.all()) == [build]
    assert (redelivery.outcome, redelivery.response_code, redelivery.delivery_id) == ("ignored", 200, "")
    assert "Redelivery of same-id" in redelivery.reason and not redelivery.builds.exists()


def test_a_forged_delivery_cannot_claim_a_real_delivery_id(client, github):
    payload = payloads.github_push(repo(github))
    forged = deliver(client, github, payload, delivery_id="real-id", secret="guess")
    assert forged.status_code == 401
    real = deliver(client, github, payload, delivery_id="real-id")
    assert real.status_code == 202 and Build.objects.count() == 1
    assert sorted(WebhookDelivery.objects.values_list("outcome", "delivery_id")) == [
        ("queued", "real-id"),
        ("rejected", "real-id"),
    ]


def test_the_same_delivery_id_on_another_connection_is_another_delivery(client, github, account):
    other = make_connection(account, provider="github")
    make_trigger(make_worker(account, "other"), other)
    assert deliver(client, github, payloads.github_push(repo(github)), delivery_id="x").status_code == 202
    assert deliver(client, other, payloads.github_push(repo(other)), delivery_id="x").status_code == 202
    assert Build.objects.count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_five_parallel_redeliveries_make_exactly_one_build(account):
    connection = make_connection(account, provider="github")
    make_trigger(make_worker(account, "race"), connection)
    payload = payloads.github_push(repo(connection))
    responses = at_once(*[lambda: deliver(Client(), connection, payload, delivery_id="parallel-1")] * 5)

    assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 202]
    build = Build.objects.get()
    assert all(r.json()["builds"] == [str(build.build_uuid)] for r in responses)
    claimed = WebhookDelivery.objects.get(delivery_id="parallel-1")
    assert list(claimed.builds.all()) == [build]
    assert WebhookDelivery.objects.filter(delivery_id="", reason__startswith="Redelivery of parallel-1").count() == 4


# Refused deliveries: a 4xx with a reason, recorded, nothing built.


def test_it_rejects_wrong_signature(client, github):
    response = deliver(client, github, payloads.github_push(repo(github)), secret="wrong", delivery_id="bad-1")
    delivery = assert_not_built(response, github, 401, DeliveryOutcome.REJECTED, "does not match")
    assert delivery.delivery_id == "bad-1"


def test_it_rejects_a_missing_signature(client, github):
    payload = payloads.github_push(repo(github))
    response = deliver(client, github, payload, headers={"X-Hub-Signature-256": None, "X-Hub-Signature": None})
    assert_not_built(response, github, 401, DeliveryOutcome.REJECTED, "X-Hub-Signature-256 is missing")


def test_it_refuses_sha1_signatures(client, github):
    response = deliver(client, github, payloads.github_push(repo(github)), headers={"X-Hub-Signature-256": None})
    assert_not_built(response, github, 401, DeliveryOutcome.REJECTED, "SHA-1 signatures are not")


def test_it_rejects_a_signature_over_another_body(client, github):
    other = payloads.github_signature(b'{"ref": "refs/heads/main"}')
    response = deliver(client, github, payloads.github_push(repo(github)), headers={"X-Hub-Signature-256": other})
    assert_not_built(response, github, 401, DeliveryOutcome.REJECTED, "does not match")


@pytest.mark.parametrize("token", ["wrong", None])
def test_it_rejects_a_wrong_or_missing_gitlab_token(client, gitlab, token):
    response = deliver(client, gitlab, payloads.gitlab_push(repo(gitlab)), headers={"X-Gitlab-Token": token})
    assert_not_built(response, gitlab, 401, DeliveryOutcome.REJECTED, "X-Gitlab-Token")


def test_a_connection_without_a_secret_accepts_nothing(client, account):
    connection = make_connection(account, provider="github", secret="")
    make_trigger(make_worker(account, "nosecret"), connection)
    response = deliver(client, connection, payloads.github_push(repo(connection)), secret="")
    assert_not_built(response, connection, 401, DeliveryOutcome.REJECTED, "has no webhook secret")


@pytest.mark.parametrize("path", [f"/webhooks/{uuid.uuid4()}", "/webhooks/not-a-uuid", "/webhooks/%00"])
def test_an_unknown_connection_is_404_and_not_recorded(client, github, path):
    response = client.generic(
        "POST", path, data=b"{}", content_type="application/json", headers={"X-GitHub-Event": "push"}
    )
    assert response.status_code == 404
    assert response.json()["reason"] == "No repository connection has this URL."
    assert not WebhookDelivery.objects.exists()


def test_it_answers_get_with_405(client, github):
    response = client.get(f"/webhooks/{github.uuid}")
    assert response.status_code == 405 and response["Allow"] == "POST"
    assert "POST" in response.json()["reason"]
    assert not WebhookDelivery.objects.exists()


def test_a_request_naming_no_provider_is_400(client, github):
    response = client.generic("POST", f"/webhooks/{github.uuid}", data=b"{}", content_type="application/json")
    assert_not_built(response, github, 400, DeliveryOutcome.REJECTED, "neither X-GitHub-Event nor X-Gitlab-Event")


def test_a_gitlab_delivery_to_a_github_connection_is_400(client, github):
    response = client.generic(
        "POST",
        f"/webhooks/{github.uuid}",
        data=b"{}",
        content_type="application/json",
        headers={"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "s3cret"},
    )
    assert_not_built(
        response, github, 400, DeliveryOutcome.REJECTED, "GitLab delivery, but the connection is for GitHub"
    )


def test_a_body_over_25_mb_is_413(client, github):
    body = b'{"ref": "' + b"x" * (25 * 1024 * 1024) + b'"}'
    headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": payloads.github_signature(body)}
    response = client.generic(
        "POST", f"/webhooks/{github.uuid}", data=body, content_type="application/json", headers=headers
    )
    assert_not_built(response, github, 413, DeliveryOutcome.REJECTED, "larger than 25 MB")


def signed_post(client, connection, body: bytes, content_type: str = "application/json"):
    headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": payloads.github_signature(body)}
    return client.generic("POST", f"/webhooks/{connection.uuid}", data=body, content_type=content_type, headers=headers)


@pytest.mark.parametrize(
    "body, content_type, status, reason",
    [
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b"[1, 2]", "application/json", 400, "not a JSON object"),
        (b"\xff\xfe{}", "application/json", 400, "not valid utf-8 text"),
        (b'{"ref": "refs/heads/main"}', "text/plain", 415, "Send application/json"),
        (b'{"ref": "refs/heads/main"}', "application/json; charset=klingon", 415, "Unknown charset"),
        (b"nopayload=1", "application/x-www-form-urlencoded", 400, "no single `payload` field"),
        (b"payload=%7B%22a%22", "application/x-www-form-urlencoded", 400, "not valid JSON"),
        (b"[" * 100000 + b"]" * 100000, "application/json", 400, "not valid JSON"),
    ],
)
def test_undecodable_bodies_are_400_or_415(client, github, body, content_type, status, reason):
    assert_not_built(signed_post(client, github, body, content_type), github, status, DeliveryOutcome.REJECTED, reason)


def without(payload: dict, path: str) -> dict:
    payload = copy.deepcopy(payload)
    *parents, last = path.split(".")
    node = payload
    for key in parents:
        node = node[key]
    del node[last]
    return payload


def replaced(payload: dict, path: str, value) -> dict:
    payload = copy.deepcopy(payload)
    *parents, last = path.split(".")
    node = payload
    for key in parents:
        node = node[key]
    node[last] = value
    return payload


@pytest.mark.parametrize(
    "make, event, reason",
    [
        (lambda r: without(payloads.github_push(r), "ref"), "push", "The payload has no ref."),
        (lambda r: without(payloads.github_push(r), "after"), "push", "The payload has no after."),
        (lambda r: without(payloads.github_push(r), "repository"), "push", "The payload has no repository.id."),
        (lambda r: replaced(payloads.github_push(r), "after", "HEAD"), "push", "after is not a commit hash"),
        (lambda r: replaced(payloads.github_push(r), "ref", 7), "push", "ref must be a string"),
        (lambda r: replaced(payloads.github_push(r), "commits", {}), "push", "commits must be a list"),
        (lambda r: replaced(payloads.github_push(r), "commits", [3]), "push", "commits[0] must be an object"),
        (lambda r: replaced(payloads.github_push(r), "ref", "refs/heads/-x"), "push", "not a branch name"),
        (
            lambda r: without(payloads.github_pull_request(r), "pull_request.head.sha"),
            "pull_request",
            "no pull_request.head.sha",
        ),
        (
            lambda r: replaced(payloads.github_pull_request(r), "pull_request.number", "42"),
            "pull_request",
            "pull_request.number must be an integer",
        ),
        (lambda r: replaced(payloads.github_push(r), "repository.id", r + 1), "push", "is about repository"),
    ],
)
def test_payloads_missing_what_we_need_are_400_naming_it(client, github, make, event, reason):
    response = deliver(client, github, make(repo(github)), event=event)
    assert_not_built(response, github, 400, DeliveryOutcome.REJECTED, reason)


def test_a_gitlab_merge_request_without_last_commit_is_400(client, gitlab):
    payload = without(payloads.gitlab_merge_request(repo(gitlab)), "object_attributes.last_commit")
    response = deliver(client, gitlab, payload, event="Merge Request Hook")
    assert_not_built(response, gitlab, 400, DeliveryOutcome.REJECTED, "no object_attributes.last_commit.id")


def test_a_failure_after_verification_is_503_with_a_reason_and_claims_nothing(client, github, monkeypatch):
    def broken(trigger, **details):
        raise RuntimeError("bug")

    monkeypatch.setattr(Trigger, "build_of", broken)
    payload = payloads.github_push(repo(github))
    response = deliver(client, github, payload, delivery_id="oops")
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert response.json()["reason"].startswith("Buildsite failed to process this delivery")
    assert "Traceback" not in response.content.decode() and "bug" not in response.content.decode()
    assert not Build.objects.exists()
    delivery = only_delivery(github)
    assert (delivery.outcome, delivery.response_code) == ("rejected", 503)
    monkeypatch.undo()
    assert deliver(client, github, payload, delivery_id="oops").status_code == 202


# Whatever arrives: never a 5xx.

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40)
PROVIDER_EVENTS = {
    "github": ["push", "pull_request", "ping", "issues"],
    "gitlab": ["Push Hook", "Tag Push Hook", "Merge Request Hook", "Note Hook"],
}
FIXTURES = {
    "github": [
        ("push", payloads.github_push),
        ("push", payloads.github_tag_push),
        ("push", payloads.github_branch_deletion),
        ("pull_request", payloads.github_pull_request),
        ("ping", payloads.github_ping),
    ],
    "gitlab": [
        ("Push Hook", payloads.gitlab_push),
        ("Tag Push Hook", payloads.gitlab_tag_push),
        ("Merge Request Hook", payloads.gitlab_merge_request),
    ],
}
CONTENT_TYPES = (
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "application/json; charset=latin-1",
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded; charset=utf-16",
            "multipart/form-data; boundary=x",
            "text/plain",
            "",
        ]
    )
    | HEADER_TEXT
)


@st.composite
def mutated(draw, payload: dict):
    """The payload with one field, at any depth, removed or replaced by any JSON."""
    payload = copy.deepcopy(payload)
    node, trail = payload, []
    while isinstance(node, (dict, list)) and node and draw(st.integers(0, 4)):
        key = draw(st.sampled_from(sorted(node)) if isinstance(node, dict) else st.integers(0, len(node) - 1))
        trail.append((node, key))
        node = node[key]
    if trail:
        container, key = trail[-1]
        if isinstance(container, dict) and draw(st.booleans()):
            del container[key]
        else:
            container[key] = draw(JSON)
    return payload


@st.composite
def deliveries(draw, connections: dict):
    provider = draw(st.sampled_from(sorted(connections)))
    connection = connections[provider]
    kind = draw(st.sampled_from(["fixture", "fixture", "json", "bytes"]))
    if kind == "fixture":
        event, make = draw(st.sampled_from(FIXTURES[provider]))
        payload = draw(mutated(make(int(connection.repo_id))))
        text = json.dumps(payload)
        form = provider == "github" and draw(st.booleans())
        body = f"payload={quote(text)}".encode() if form else text.encode()
        content_type = "application/x-www-form-urlencoded" if form else "application/json"
    else:
        event = draw(st.sampled_from(PROVIDER_EVENTS[provider]) | HEADER_TEXT)
        body = json.dumps(draw(JSON)).encode() if kind == "json" else draw(st.binary(max_size=300))
        content_type = draw(CONTENT_TYPES)
    headers = draw(
        st.dictionaries(
            st.sampled_from(
                ["X-GitHub-Event", "X-GitHub-Delivery", "X-Hub-Signature", "X-Gitlab-Event", "Idempotency-Key"]
            ),
            HEADER_TEXT,
            max_size=3,
        )
    )
    if draw(st.integers(0, 5)):
        headers[EVENT_HEADERS[provider]] = event
    if draw(st.integers(0, 3)):  # mostly signed with the right secret, so parsing is reached
        if provider == "github":
            headers["X-Hub-Signature-256"] = payloads.github_signature(body)
        else:
            headers["X-Gitlab-Token"] = "s3cret"
    else:
        headers["X-Hub-Signature-256" if provider == "github" else "X-Gitlab-Token"] = draw(HEADER_TEXT)
    return connection, body, content_type, headers


@pytest.mark.django_db
def test_whatever_arrives_the_answer_is_never_a_5xx(account):
    github = make_connection(account, provider="github")
    gitlab = make_connection(account, provider="gitlab")
    worker = make_worker(account, "fuzz")
    make_trigger(worker, github, path_excludes=["docs/*"])
    make_trigger(worker, gitlab, branch_excludes=["*-x"])
    client = Client()

    @settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(deliveries({"github": github, "gitlab": gitlab}))
    def check(delivery) -> None:
        connection, body, content_type, headers = delivery
        response = client.generic(
            "POST", f"/webhooks/{connection.uuid}", data=body, content_type=content_type, headers=headers
        )
        assert response.status_code < 500, response.content
        assert response.json()["reason"]

    check()
    # The random deliveries did reach the parsers and the builds, not only the door.
    assert WebhookDelivery.objects.exclude(outcome=DeliveryOutcome.REJECTED).exists()
    assert WebhookDelivery.objects.filter(outcome=DeliveryOutcome.REJECTED, response_code=400).exists()


def test_the_admin_lists_deliveries_newest_first_with_the_builds_they_created(client, github):
    deliver(client, github, payloads.github_push(repo(github)), delivery_id="first-one")
    deliver(client, github, payloads.github_ping(repo(github)), event="ping", delivery_id="second-one")
    build = Build.objects.get()
    admin = get_user_model().objects.create_superuser("root", "root@example.com", None)
    client.force_login(admin)
    page = client.get("/admin/builds/webhookdelivery/").content.decode()
    assert page.index("second-one") < page.index("first-one")
    assert f'<a href="/admin/builds/build/{build.pk}/change/">{build.build_uuid}</a>' in page
    delivery = WebhookDelivery.objects.get(delivery_id="first-one")
    detail = client.get(f"/admin/builds/webhookdelivery/{delivery.pk}/change/")
    assert detail.status_code == 200 and str(build.build_uuid) in detail.content.decode()
