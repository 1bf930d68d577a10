"""Error mapping from HTTP status + error body, and the exception hierarchy."""

from __future__ import annotations

import httpx
import pytest

import llava_interleave_client as sdk
from llava_interleave_client._exceptions import make_status_error

pytestmark = pytest.mark.unit

REQ = httpx.Request("POST", "http://127.0.0.1:1/v1/chat/completions")


def _response(status: int, body=None, text=None, headers=None) -> httpx.Response:
    if body is not None:
        return httpx.Response(status, json=body, headers=headers, request=REQ)
    return httpx.Response(status, text=text or "", headers=headers, request=REQ)


def _err(message="bad", type_="invalid_request_error", param=None, code=None):
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


@pytest.mark.parametrize(
    "status, cls",
    [
        (400, sdk.BadRequestError),
        (401, sdk.AuthenticationError),
        (403, sdk.PermissionDeniedError),
        (404, sdk.NotFoundError),
        (413, sdk.RequestTooLargeError),
        (422, sdk.UnprocessableEntityError),
        (429, sdk.RateLimitError),
        (500, sdk.InternalServerError),
        (502, sdk.InternalServerError),
        (503, sdk.ServiceUnavailableError),
        (504, sdk.InternalServerError),
        (418, sdk.APIStatusError),
    ],
)
def test_status_maps_to_class(status, cls):
    resp = _response(status, _err("it broke", "some_type", "messages[0].content[1]", "too_long"),
                     headers={"x-request-id": "req-123"})
    exc = make_status_error(resp)
    assert type(exc) is cls
    assert exc.status_code == status
    assert exc.message == "it broke"
    assert exc.type == "some_type"
    assert exc.param == "messages[0].content[1]"
    assert exc.code == "too_long"
    assert exc.request_id == "req-123"
    assert exc.response is resp and exc.request is REQ
    assert exc.body == _err("it broke", "some_type", "messages[0].content[1]", "too_long")
    assert str(exc) == f"Error code: {status} - it broke, request_id=req-123"


def test_hierarchy():
    assert issubclass(sdk.ServiceUnavailableError, sdk.InternalServerError)
    assert issubclass(sdk.InternalServerError, sdk.APIStatusError)
    assert issubclass(sdk.APITimeoutError, sdk.APIConnectionError)
    for cls in (sdk.APIStatusError, sdk.APIConnectionError, sdk.APIStreamError, sdk.APIResponseValidationError):
        assert issubclass(cls, sdk.APIError) and issubclass(cls, sdk.InterleaveError)
    assert issubclass(sdk.MediaError, ValueError) and issubclass(sdk.MediaError, sdk.InterleaveError)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"body": {"detail": "Method Not Allowed"}}, "Method Not Allowed"),
        ({"body": {"detail": [{"loc": ["body", "n"], "msg": "bad"}]}}, '[{"loc": ["body", "n"], "msg": "bad"}]'),
        ({"body": {"error": "plain string error"}}, "plain string error"),
        ({"text": "upstream connect error"}, "upstream connect error"),
        ({"text": ""}, "HTTP 502 Bad Gateway"),
    ],
)
def test_messages_from_other_bodies(kwargs, message):
    exc = make_status_error(_response(502, **kwargs))
    assert exc.message == message
    assert exc.type is None and exc.param is None and exc.code is None and exc.request_id is None


def test_client_raises_mapped_error_without_retrying_400():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(400, json=_err("prompt (12000 tokens) + max_tokens (64) > context (8192)",
                                             param="max_tokens"), headers={"x-request-id": "abc"})

    client = sdk.Client(base_url="http://127.0.0.1:9/v1", http_client=httpx.Client(transport=httpx.MockTransport(handler)))
    with pytest.raises(sdk.BadRequestError) as info:
        client.chat.completions.create(model="m", messages=[sdk.user("hi")])
    assert len(calls) == 1
    assert info.value.request_id == "abc" and info.value.param == "max_tokens"
    assert "12000 tokens" in info.value.message


def test_non_json_success_is_a_validation_error():
    client = sdk.Client(base_url="http://127.0.0.1:9/v1", http_client=httpx.Client(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, text="<html>proxy</html>"))))
    with pytest.raises(sdk.APIResponseValidationError, match="expected a JSON body"):
        client.models.list()
    client = sdk.Client(base_url="http://127.0.0.1:9/v1", http_client=httpx.Client(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json={"data": "nope"}))))
    with pytest.raises(sdk.APIResponseValidationError, match="unexpected response body"):
        client.models.list()
