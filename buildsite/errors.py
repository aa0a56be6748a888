"""What a user sees when our code fails: the Cloudflare error envelope on API paths,
a plain page elsewhere; never a traceback or a secret. Django has already logged the
exception (tagged with the request id) before this runs."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.html import escape

from builds.api.envelope import API_PREFIX, envelope, internal_error


def server_error(request: HttpRequest) -> HttpResponse:
    problem = internal_error(request)
    if request.path.startswith(API_PREFIX):
        return JsonResponse(envelope(errors=[problem]), status=500)
    return HttpResponse(
        f"<!doctype html><title>Server error</title><h1>Something went wrong</h1><p>{escape(problem['message'])}</p>",
        status=500,
    )
