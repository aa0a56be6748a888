"""What a user sees when our code fails: the Cloudflare error envelope on API paths,
a plain page elsewhere; never a traceback or a secret. Django has already logged the
exception (tagged with the request id) before these run."""

from django.http import HttpRequest, HttpResponse, JsonResponse

API_PREFIX = "/client/v4/"
INTERNAL_ERROR_CODE = 10001


def server_error(request: HttpRequest) -> HttpResponse:
    request_id = getattr(request, "request_id", "")
    message = f"Internal server error; quote request id {request_id} when reporting it."
    if request.path.startswith(API_PREFIX):
        body = {"success": False, "errors": [{"code": INTERNAL_ERROR_CODE, "message": message}], "messages": []}
        body["result"] = None
        return JsonResponse(body, status=500)
    return HttpResponse(
        f"<!doctype html><title>Server error</title><h1>Something went wrong</h1><p>{message}</p>",
        status=500,
    )
