"""The audit index: every verified event of Signoff's record topics in one SQLite file, kept up
to date incrementally, and the questions an auditor asks of it (`signoff audit`).

    index.py    the SQLite file: events (by topic and event_id), open chain links, policies
    ledger.py   its book-keeping: stored offsets and epochs, gaps, problems, acknowledgments, health
    ingest.py   one partition's records into the index: verify, decode, detect gaps (pure of Kafka)
    feed.py     catch_up(kafka, keyring, index): read each partition from its stored offset to its end
    queries.py  releases(model), production_at(model, t), export rows: answers from the index alone
    views.py    the typed answers (pydantic), shared by the queries and the CLI

Nothing in the index is a fact unless its signature verified while it was indexed: a record that
does not verify or decode is a problem (topic, partition, offset, reason), never an event. What
is missing is said, never skipped: a partition whose log starts after the index's stored offset
(records deleted or expired before they were indexed) is a gap, and so is an event whose cause,
checks, approval or submission the index does not hold (an open chain link), and a topic deleted
and created again. A record that claims what another indexed event claimed (its event_id, its
submission) is a conflict, never a silent duplicate.
"""
