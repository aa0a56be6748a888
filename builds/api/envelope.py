"""The Cloudflare v4 envelope around every API response, and the one exception handler
that turns every error raised in an API view (validation, authentication, 404, 405,
415, 429, parse errors, and our own bugs) into it.

Error codes are stable. 12000 and 12005 are the codes Cloudflare's Workers Builds API
uses for "not found" and a missing or invalid token; 10001 is the code buildsite.errors
gives a server error; the others are Buildsite's, one per kind of error."""

import logging
import math

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

log = logging.getLogger(__name__)

API_PREFIX = "/client/v4/"

NOT_FOUND = 12000
AUTHENTICATION_ERROR = 12005
INVALID_REQUEST = 12001
PERMISSION_DENIED = 12003
METHOD_NOT_ALLOWED = 12004
CONFLICT = 12009
UNSUPPORTED_MEDIA_TYPE = 12015
RATE_LIMITED = 12029
INTERNAL_ERROR = 10001

CODES = {
    400: INVALID_REQUEST,
    401: AUTHENTICATION_ERROR,
    403: PERMISSION_DENIED,
    404: NOT_FOUND,
    405: METHOD_NOT_ALLOWED,
    406: UNSUPPORTED_MEDIA_TYPE,
    409: CONFLICT,
    415: UNSUPPORTED_MEDIA_TYPE,
    429: RATE_LIMITED,
    503: INTERNAL_ERROR,
}

MISSING_TOKEN = "Missing token from authorization header"  # noqa: S105 - a message
INVALID_TOKEN = "Invalid token"  # noqa: S105 - a message, not a secret


class Conflict(exceptions.APIException):
    """The request is well formed but the object's state does not allow it."""

    status_code = 409
    default_detail = "The object's current state does not allow this."
    default_code = "conflict"


def envelope(result=None, *, errors: list[dict] | None = None, result_info: dict | None = None) -> dict:
    return {
        "success": not errors,
        "errors": errors or [],
        "messages": [],
        "result": result,
        "result_info": result_info,
    }


def ok(result=None, *, result_info: dict | None = None) -> Response:
    return Response(envelope(result, result_info=result_info))


def page_info(*, page: int, per_page: int, count: int, total_count: int) -> dict:
    return {
        "page": page,
        "per_page": per_page,
        "count": count,
        "total_count": total_count,
        "total_pages": math.ceil(total_count / per_page),
    }


def error(code: int, message: str, pointer: str | None = None) -> dict:
    item = {"code": code, "message": message}
    if pointer is not None:
        item["source"] = {"pointer": pointer}
    return item


def field_errors(detail, path: tuple[str, ...] = ()) -> list[dict]:
    """A serializer's nested error detail as one error per message, each naming its
    field in the message ("branch: ...") and as a JSON pointer ("/branch")."""
    if isinstance(detail, dict):
        return [e for key, value in detail.items() for e in field_errors(value, (*path, str(key)))]
    if isinstance(detail, list):
        # A list holds a field's messages, or one entry per item of a list of objects.
        return [
            e
            for index, item in enumerate(detail)
            for e in field_errors(item, path if isinstance(item, str) else (*path, str(index)))
        ]
    names = [name for name in path if name != api_settings.NON_FIELD_ERRORS_KEY]
    if not names:
        return [error(INVALID_REQUEST, str(detail))]
    return [error(INVALID_REQUEST, f"{'.'.join(names)}: {detail}", "/" + "/".join(names))]


def exception_handler(exc: Exception, context: dict) -> Response:
    """DRF's handler (which sets WWW-Authenticate and Retry-After and rolls back the
    transaction), with its body replaced by the envelope; anything else is our bug: it
    is logged with its traceback and answered as a 500 in the envelope."""
    response = drf_exception_handler(exc, context)
    if response is None:
        log.error("Unhandled error in %s", context["view"].__class__.__name__, exc_info=exc)
        set_rollback()
        return Response(envelope(errors=[internal_error(context["request"])]), status=500)
    if isinstance(exc, exceptions.ValidationError):
        errors = field_errors(response.data)
    elif isinstance(exc, exceptions.NotAuthenticated):
        errors = [error(AUTHENTICATION_ERROR, MISSING_TOKEN)]
    else:
        errors = [error(CODES.get(response.status_code, INVALID_REQUEST), str(response.data["detail"]))]
    response.data = envelope(errors=errors)
    return response


def internal_error(request: HttpRequest) -> dict:
    request_id = getattr(request, "request_id", "")
    quote = f"; quote request id {request_id} when reporting it" if request_id else ""
    return error(INTERNAL_ERROR, f"Internal server error{quote}.")


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler404: an unknown URL under the API answers in the envelope too."""
    if request.path.startswith(API_PREFIX):
        return JsonResponse(envelope(errors=[error(NOT_FOUND, "No such API route.")]), status=404)
    return defaults.page_not_found(request, exception)
