"""The web console: what reviewers and operators see, server-rendered (FastAPI + Jinja2, plain forms).

    settings.py     CONSOLE_* (and the SIGNOFF_* the services share): where the review API, the
                    token file, the audit index and Kafka are
    sessions.py     sign-in sessions and their CSRF tokens (server-side, sealed; shared by replicas)
    session_store.py  where sessions live: this process's memory, an SQLite file or PostgreSQL
    projection.py   pure: the topics' events as submissions with status and timeline, pending reviews
    projection_snapshot.py  pure: the projection as a snapshot (one summary per submission), so a start
                    applies only the events indexed since instead of all history
    feed.py         the audit index (shared.audit) caught up from the topics, fed into the projection
    reviews_api.py  the review-notifier's HTTP API, called with the signed-in person's own credential
    pages.py        the routes: sign-in, reviews (evidence, confirm, vote), submissions, models, dead letters
    app.py          builds the app from its settings (`python -m services.console` serves it)

The console decides nothing: a vote goes to the review-notifier's API as the person's own
credential (the same rules as every channel), a re-drive goes through shared.dlq, and every page
reads what the audit index verified.
"""

SERVICE = "console"
