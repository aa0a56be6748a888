"""Migrations that move data keep it: run forwards (and back) over rows made with the
models as they were."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE_DELIVERY_FK = [("builds", "0003_build_account_modified_index")]
DELIVERY_FK = [("builds", "0004_build_delivery")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_builds_keep_the_delivery_that_queued_them():
    old = migrate(BEFORE_DELIVERY_FK)
    Account = old.get_model("accounts", "Account")
    Worker, Build = old.get_model("builds", "Worker"), old.get_model("builds", "Build")
    RepoConnection = old.get_model("builds", "RepoConnection")
    WebhookDelivery = old.get_model("builds", "WebhookDelivery")
    account = Account.objects.create(name="Acme")
    worker = Worker.objects.create(account=account, name="site", tag="a" * 32)
    repo = RepoConnection.objects.create(account=account, provider="github", repo_id="1", clone_url="file:///x")

    def build():
        return Build.objects.create(account=account, worker=worker, branch="main", build_image="img", clone_url="x")

    queued_by_push, not_by_a_delivery = build(), build()
    delivery = WebhookDelivery.objects.create(repo_connection=repo, provider="github", delivery_id="d-1")
    delivery.builds.add(queued_by_push)

    try:
        new = migrate(DELIVERY_FK)
        Build = new.get_model("builds", "Build")
        assert Build.objects.get(pk=queued_by_push.pk).delivery_id == delivery.pk
        assert Build.objects.get(pk=not_by_a_delivery.pk).delivery_id is None

        back = migrate(BEFORE_DELIVERY_FK)
        delivery = back.get_model("builds", "WebhookDelivery").objects.get(pk=delivery.pk)
        assert [b.pk for b in delivery.builds.all()] == [queued_by_push.pk]
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
