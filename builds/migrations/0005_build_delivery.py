"""A build points at the webhook delivery that queued it (a foreign key), instead of
the delivery holding a many-to-many list of builds: the delivery record is written
first and each build carries it in its own INSERT, one query less per delivery.
And a build's plain variables are recorded when it starts, no longer when queued."""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def copy_delivery_builds(apps, schema_editor):
    Build = apps.get_model("builds", "Build")
    through = apps.get_model("builds", "WebhookDelivery").builds.through
    # A build was only ever queued by one delivery.
    delivery = through.objects.filter(build_id=OuterRef("pk")).values("webhookdelivery_id")[:1]
    Build.objects.filter(pk__in=through.objects.values("build_id")).update(delivery_id=Subquery(delivery))


def copy_back(apps, schema_editor):
    Build = apps.get_model("builds", "Build")
    through = apps.get_model("builds", "WebhookDelivery").builds.through
    through.objects.bulk_create(
        through(webhookdelivery_id=delivery_id, build_id=build_id)
        for build_id, delivery_id in Build.objects.exclude(delivery=None).values_list("pk", "delivery_id")
    )


class Migration(migrations.Migration):
    dependencies = [("builds", "0004_log_chunks")]

    operations = [
        migrations.AddField(
            model_name="build",
            name="delivery",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="builds.webhookdelivery",
            ),
        ),
        migrations.RunPython(copy_delivery_builds, copy_back),
        migrations.RemoveField(model_name="webhookdelivery", name="builds"),
        migrations.AlterField(
            model_name="build",
            name="delivery",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="builds",
                to="builds.webhookdelivery",
            ),
        ),
        migrations.AlterField(
            model_name="build",
            name="environment_variables",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="The non-secret variables it ran with, recorded when it starts running.",
            ),
        ),
    ]
