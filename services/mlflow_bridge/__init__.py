"""The MLflow bridge: every new version in the MLflow Model Registry submitted to Signoff.

MLflow calls its webhook (`model_version.created`, HMAC-signed) and the bridge resolves the version
(signoff/mlflow_source.py), digests its files and publishes `model.submitted`, signed with the
bridge's pipeline key, as its pipeline principal on Kafka. Where MLflow cannot call the bridge,
it polls the registry with a stored cursor instead. The same version always makes the same event
(ids derived from the tracking URI, the name and the version), so a webhook, a poll and a
redelivery of one version are one submission to every consumer.

    settings.py   MLFLOW_BRIDGE_* (and SIGNOFF_MLFLOW_* for the mapping rules)
    webhook.py    verifying a delivery: signature, freshness (pure)
    state.py      delivery ids seen, versions handled, the poll cursor (SQLite)
    bridge.py     handling a version, polling, registering the webhook (I/O)
    app.py        the FastAPI app built from settings (`signoff mlflow bridge` runs it)
"""
