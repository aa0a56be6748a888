"""Where a trigger's build cache lives, and purging it.

Nothing fills the cache yet: the Build Buddy is to mount cache_dir(trigger) into the
build when the trigger has build_caching_enabled. Until then a purge finds nothing."""

import shutil
from pathlib import Path

from django.conf import settings


def cache_dir(trigger) -> Path:
    return Path(settings.BUILDSITE_WORKSPACE_DIR) / "cache" / str(trigger.uuid)


def purge(trigger) -> None:
    """Deletes the trigger's build cache, if it has one."""
    path = cache_dir(trigger)
    if path.exists():
        shutil.rmtree(path)
