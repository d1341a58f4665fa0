"""The ACL table (shared/acl.py) against what each service really does: every app is built by its
own factory, and its broker's subscribers and publishers are read. A service that starts
publishing or consuming a topic the table does not give it fails here, before the broker refuses
it in production; and the table grants a service nothing it does not use."""

from __future__ import annotations

import importlib

import pytest

from shared import acl, topics

MODULES = ("validator", "policy", "review_notifier", "deployer")


def uses(wiring) -> dict[str, set[str]]:
    """What the app's broker does: topics it writes, consumes (in a group), follows (group-less)."""
    broker = wiring.broker
    out: dict[str, set[str]] = {"write": set(), "consume": set(), "follow": set(), "groups": set()}
    for sub in broker.subscribers:
        for topic in sub.topic_names:
            out["consume" if sub.group_id else "follow"].add(topic)
        if sub.group_id:
            out["groups"].add(sub.group_id)
    out["write"] = {pub.topic for pub in broker.publishers}
    out["write"] |= {topics.dlq(t) for t in out["consume"]}  # DeadLetters publishes there
    return out


@pytest.mark.parametrize("module", MODULES)
def test_the_table_gives_each_service_exactly_what_it_uses(build_app, module: str) -> None:
    wiring = build_app(module)
    service = importlib.import_module(f"services.{module}").SERVICE
    principal = acl.SERVICE_OF_MODULE[module]
    assert service == principal  # the group prefix and the principal are one name
    table = acl.Table(group_prefix=wiring.settings.consumer_group_prefix)
    used = uses(wiring)

    granted = {op: {b.resource_name for b in table.bindings()
                    if b.principal == acl.user(principal) and b.resource_type == acl.ResourceType.TOPIC
                    and b.operation == op}
               for op in (acl.Operation.WRITE, acl.Operation.READ)}
    assert used["write"] == granted[acl.Operation.WRITE]
    assert used["consume"] | used["follow"] == granted[acl.Operation.READ]
    assert all(g.startswith(table.group(principal)) for g in used["groups"]), used["groups"]
    groups = {b for b in table.bindings() if b.principal == acl.user(principal)
              and b.resource_type == acl.ResourceType.GROUP}
    assert groups == ({acl.Binding(acl.user(principal), acl.ResourceType.GROUP, table.group(principal),
                                   acl.PatternType.PREFIXED, acl.Operation.READ)} if used["consume"] else set())
