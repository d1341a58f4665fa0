"""bench.chaos: Signoff under faults, on the real broker, against what must always hold.

A seeded scenario (`scenario`: auto-approved, human-approved, human-rejected and checks-failed
submissions across several models, copies of rejected artifacts under other names, several
versions of one model with approvals that arrive out of order) is driven through the four services
(`drive`) while a seeded fault injector (`faults`) kills services with SIGKILL and restarts them,
kills the broker once, and holds the policy and the deployer down around a rejection. After the
drain, the figures (`figures`) are computed from every topic, read to its end with offsets, and
from the model store on disk.

    python -m bench.chaos --seed 1 --submissions 120    # or `make chaos`: the table, JSON in .data/chaos/
    tests/chaos/test_chaos.py                           # a small fixed-seed run in the suite

Module by module: `scenario` (the plan, pure), `world` (the broker from the jars and the services
as processes), `faults`, `tail` (a live reader of every topic), `drive` (runs a plan, drains),
`figures` (pure), `report` (the table and the JSON).
"""

from __future__ import annotations

# The workflow of the end-to-end tests (tests/e2e/conftest.py): automatic above 90 % accuracy,
# otherwise alice or bob (group:leads) decides through the review-notifier's HTTP API; below 80 %
# the checks fail.
WORKFLOW = """
name: chaos-default
default: true
steps:
  - name: automated_checks
    type: checks
    inputs: {min: {accuracy: 0.80}}
  - name: manual_approval
    type: approval
    when: "metrics.accuracy <= 0.90"
    inputs: {approvers: ['alice', 'group:leads'], quorum: 1, timeout: 1h}
    on_reject: fail_pipeline
  - name: deploy
    type: deploy
    inputs: {target: model-store}
"""
GROUPS = "leads: [bob]\n"
REVIEWERS = ("alice", "bob")
SUBMITTER = "carol"
