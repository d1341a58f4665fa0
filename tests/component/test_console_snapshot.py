"""The console's pages served from a projection restored from its snapshot (feed.py): the lists
from the snapshot's summaries, a pending review's confirmation from its restored request, and a
submission's timeline read from the audit index (the snapshot holds no timelines)."""

from __future__ import annotations

import dataclasses

from services.console.feed import Feed
from services.console.pages import Parts
from services.console.projection import Projection
from shared.audit.index import Index
from shared.snapshot_store import SnapshotStore
from shared.sqlite import open_durable
from tests.component.test_console import console_of


def test_pages_of_a_restored_console_show_what_the_index_holds(tmp_path) -> None:
    console = console_of(tmp_path)
    parts: Parts = console.client.app.state.parts  # type: ignore[attr-defined]
    events = [e for sub in parts.projection.submissions.values() for e in sub.events]
    index = parts.feed.index
    with index.transaction():
        for offset, event in enumerate(events):
            index.add_event(event.topic, 0, offset, event, None, None)
    writer = Feed(parts.kafka, parts.keyring, index, Projection())
    writer._project()
    writer.store = SnapshotStore(console.settings.index_db)
    writer.save()
    # The pages run on the TestClient's own thread (in the service: the event loop's, where the index was opened).
    pages_index = Index(open_durable(console.settings.index_db, "", check_same_thread=False))
    restored = Feed(parts.kafka, parts.keyring, pages_index, Projection())
    restored.restore(SnapshotStore(console.settings.index_db))
    assert restored.last_seq == len(events) and all(s.partial and not s.events
                                                    for s in restored.projection.submissions.values())
    console.client.app.state.parts = dataclasses.replace(  # type: ignore[attr-defined]
        parts, projection=restored.projection, feed=restored)
    done = next(s.id for s in restored.projection.submissions.values() if s.status == "deployed")

    console.sign_in("alice")
    assert f"/reviews/{console.pending_id}" in console.client.get("/reviews").text
    confirm = console.client.get(f"/reviews/{console.pending_id}/confirm?decision=approve")
    assert "Approve fraud-detector 1.4.0?" in confirm.text
    deployed = console.client.get("/submissions", params={"status": "deployed"})
    assert "churn-model" in deployed.text and "fraud-detector" not in deployed.text
    timeline = console.client.get(f"/submissions/{done}").text
    assert all(t in timeline for t in ("model.submitted", "checks.passed", "review.decided", "deployment.succeeded"))
