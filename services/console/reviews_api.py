"""The review-notifier's HTTP API, as the signed-in person: the console reads a review (votes so
far, the production it shows) and casts a vote with the person's own credential, so quorum,
separation of duties and break-glass are decided there, as for every other channel.

The answers are outcomes, never exceptions, so a page can say what happened: `Answer.ok`, the
status, and the API's own message (`detail`). A vote sent without an answer (a timeout after the
request went out) is `unconfirmed`: it may have counted, and the page says how to check.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from services.review_notifier.reviews import Review

MAX_ANSWER_BYTES = 4 * 2**20


@dataclass(frozen=True)
class Answer:
    status: int  # HTTP status; 0: no answer (not reachable, or sent without an answer)
    detail: str = ""
    body: dict[str, Any] | None = None
    unconfirmed: bool = False

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class ReviewApi:
    def __init__(self, base_url: str, http: httpx.AsyncClient) -> None:
        self.base_url, self.http = base_url.rstrip("/"), http

    async def review(self, credential: str, submission_id: uuid.UUID) -> tuple[Answer, Review | None]:
        answer = await self._call("GET", f"/reviews/{submission_id}", credential)
        if not answer.ok or answer.body is None:
            return answer, None
        try:
            return answer, Review.model_validate(answer.body)
        except ValueError:
            return Answer(502, "the review API answered with a review this console cannot read"), None

    async def vote(self, credential: str, submission_id: uuid.UUID, decision: str, reason: str) -> Answer:
        return await self._call("POST", f"/reviews/{submission_id}/decision", credential,
                                {"decision": decision, "reason": reason})

    async def _call(self, method: str, path: str, credential: str, body: dict | None = None) -> Answer:
        try:
            response = await self.http.request(method, self.base_url + path, json=body,
                                               headers={"Authorization": f"Bearer {credential}"})
        except (httpx.ConnectError, httpx.ConnectTimeout):
            where = httpx.URL(self.base_url)  # scheme, host, port: the URL may hold a user:password
            return Answer(0, f"the review API at {where.scheme}://{where.netloc.decode(errors='replace')} is not "
                             "reachable; nothing was sent")
        except httpx.TransportError:
            return Answer(0, "the review API did not answer: the vote may have counted; reload this review "
                             "to see the votes so far before voting again", unconfirmed=method == "POST")
        if len(response.content) > MAX_ANSWER_BYTES:
            return Answer(502, "the review API's answer is larger than 4 MiB")
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return Answer(response.status_code, response.text[:300])
        detail = data.get("detail", "")
        return Answer(response.status_code, detail if isinstance(detail, str) else str(detail)[:300], data)
