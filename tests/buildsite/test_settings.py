import json
import os
import subprocess
import sys

from django.conf import settings

PROBE = """
import json
from django.conf import settings
print(json.dumps({
    "engine": settings.DATABASES["default"]["ENGINE"],
    "db_name": settings.DATABASES["default"]["NAME"],
    "broker": "redis" if "redis" in settings.Q_CLUSTER else "orm",
    "layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "executor": settings.BUILDSITE_EXECUTOR,
    "debug": settings.DEBUG,
    "q_timeout": settings.Q_CLUSTER["timeout"],
    "q_retry": settings.Q_CLUSTER["retry"],
    "max_build": settings.BUILDSITE_MAX_BUILD_TIMEOUT,
}))
"""

VARIABLES = ("DATABASE_URL", "REDIS_URL", "DEBUG", "BUILDSITE_EXECUTOR", "BUILDSITE_MAX_BUILD_TIMEOUT")


def load_settings(tmp_path, **env) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    clean.update(env, DJANGO_SETTINGS_MODULE="buildsite.settings", BUILDSITE_DATA_DIR=str(tmp_path))
    cmd = [sys.executable, "-c", "import django; django.setup()\n" + PROBE]
    out = subprocess.run(cmd, env=clean, capture_output=True, text=True, check=True, cwd=settings.BASE_DIR)
    return json.loads(out.stdout)


def test_nothing_set_means_embedded_defaults(tmp_path):
    loaded = load_settings(tmp_path)
    assert loaded["engine"] == "django.db.backends.sqlite3"
    assert loaded["db_name"] == str(tmp_path / "db.sqlite3")
    assert loaded["broker"] == "orm"
    assert loaded["executor"] == "auto"
    assert loaded["debug"] is False
    # Generated keys are kept private to the user running the service.
    assert oct((tmp_path / "secret_key").stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "encryption_key").stat().st_mode & 0o777) == "0o600"


def test_database_and_redis_urls_switch_to_production_parts(tmp_path):
    loaded = load_settings(
        tmp_path, DATABASE_URL="postgres://postgres@127.0.0.1:5432/buildsite", REDIS_URL="redis://127.0.0.1:6379/0"
    )
    assert loaded["engine"] == "django.db.backends.postgresql"
    assert loaded["db_name"] == "buildsite"
    assert loaded["broker"] == "redis"
    assert loaded["layer"] == "channels_redis.core.RedisChannelLayer"
    # A production install never falls back to running builds outside containers.
    assert loaded["executor"] == "docker"


def test_q2_never_redelivers_a_running_build(tmp_path):
    loaded = load_settings(tmp_path, BUILDSITE_MAX_BUILD_TIMEOUT="7200")
    assert loaded["max_build"] == 7200
    assert loaded["q_timeout"] > loaded["max_build"]
    assert loaded["q_retry"] > loaded["q_timeout"]


def test_deploy_check_reports_only_the_accepted_warning(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env.update(
        BUILDSITE_DATA_DIR=str(tmp_path),
        SECRET_KEY="x" * 20 + "production-like-secret-key-with-enough-entropy-1234567890",
        BUILDSITE_HTTPS="1",
        ALLOWED_HOSTS="builds.example.com",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        env=env,
        capture_output=True,
        text=True,
        cwd=settings.BASE_DIR,
    )
    reported = {line.split(")")[0].split("(")[-1] for line in result.stderr.splitlines() if "(security." in line}
    # W021 (HSTS preload) is accepted: preloading is a per-domain decision (README).
    assert reported == {"security.W021"}, result.stderr
