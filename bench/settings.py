"""Settings for the benchmarks: the app's own settings, served the same way, with one
trivial view added to compare against (see bench/urls.py)."""

from buildsite.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
