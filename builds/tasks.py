"""django-q2 entry points, kept thin: the work lives in buddy and scheduler."""

from builds import buddy, scheduler


def run_build(build_uuid: str) -> str:
    return buddy.run(build_uuid)


def sweep() -> dict[str, int]:
    return scheduler.sweep()
