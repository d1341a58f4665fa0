"""The console's review API client names where it could not reach without the URL's user:password
(CONSOLE_REVIEW_URL behind a basic-auth proxy): the message is shown on a page."""

from __future__ import annotations

import uuid

import httpx

from services.console.reviews_api import ReviewApi


async def test_an_unreachable_review_api_is_named_without_its_credentials() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
        api = ReviewApi("http://console:s3cr3t-proxy-pass@review-notifier:8081/", http)
        answer, review = await api.review("so_token", uuid.uuid4())
    assert answer.status == 0 and review is None
    assert "http://review-notifier:8081" in answer.detail
    assert "s3cr3t" not in answer.detail and "console:" not in answer.detail, answer.detail
