from django.apps import AppConfig
from django.db.models.signals import post_migrate


class BuildsConfig(AppConfig):
    name = "builds"

    def ready(self) -> None:
        from builds.scheduler import ensure_sweep_schedule

        post_migrate.connect(ensure_sweep_schedule, sender=self, dispatch_uid="builds.sweep_schedule")
