import json
import uuid

from channels.testing import HttpCommunicator

from buildsite.asgi import application


async def test_an_unreadable_content_type_is_400_not_500():
    # Django itself raises on this header while building the request, for any URL.
    communicator = HttpCommunicator(
        application,
        "POST",
        f"/webhooks/{uuid.uuid4()}",
        body=b"{}",
        headers=[(b"host", b"127.0.0.1"), (b"content-type", b"application/json; charset*=bogus''x")],
    )
    response = await communicator.get_response()
    assert response["status"] == 400
    assert json.loads(response["body"]) == {"reason": "The Content-Type header cannot be read."}
