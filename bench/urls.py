"""The app's URLs plus /bench/trivial: a Django view that reads the request and
answers JSON without touching the database, the floor any endpoint is compared to."""

from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from buildsite.urls import urlpatterns as app_urlpatterns


@csrf_exempt
def trivial(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"received": len(request.body)}, status=202)


urlpatterns = [path("bench/trivial", trivial), *app_urlpatterns]
