import logging
import uuid

from django.http import HttpRequest, HttpResponse

from buildsite.structured_logging import bind

log = logging.getLogger("buildsite.request")


class RequestContextMiddleware:
    """Gives each request an id (or keeps a proxy's X-Request-ID), tags every log line
    written while serving it, and returns the id so users can quote it."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
        request.request_id = request_id
        with bind(request_id=request_id):
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response
