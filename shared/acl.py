"""Who may do what on Signoff's topics: the one table, and the ACLs the broker enforces from it.

The broker runs Kafka's StandardAuthorizer with allow.everyone.if.no.acl.found=false, so a
principal may do only what an ACL below allows (`signoff acl apply` writes them; the admin is a
super user and needs none). Each service, each training pipeline (one principal per team, or one
for all) and the operators are principals of their own:

    topic                 written by                     consumed (group) by   read (group-less) by
    model.submitted       pipelines                      validator             (every record topic:
    checks.*              validator                      policy, deployer       operators and pipelines,
    review.requested      policy                         review-notifier        for watch / history /
    review.decided        policy, review-notifier        deployer               revoke)
    review.escalated      review-notifier                                      + the services' followers
    rollback.requested    operators                      deployer              (FOLLOWED below)
    revocation.requested  operators                      deployer
    deployment.*          deployer

Consumer groups are `<prefix>-<service>.<topic>` (shared/broker.py subscribe): each service may
use the groups under its own prefix `<prefix>-<service>.` and no other. A service writes the
dead-letter topic of each topic it consumes. Operators read the dead-letter topics and write every
consumed topic too, to re-drive a letter (`signoff dlq replay`): the consumer verifies the record's
own signature again, so that write cannot make an event an operator's key may not sign. Every
service may DESCRIBE every Signoff topic and DESCRIBE_CONFIGS on it (its start-up checks they
exist and keep their records). Nobody but the admin may create topics, alter configs or delete
records: no ACL here grants CREATE, ALTER_CONFIGS, DELETE or ALTER. The web console (`console`)
reads every record topic and the dead-letter topics, and writes a consumed topic only to re-drive
a dead letter into it for an operator.

Pure: the table, the bindings it implies, and the diff against what a cluster has. The wire part
is shared/admin.py (describe_acls, create_acls, delete_acls); `signoff acl apply` joins them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from shared import topics

ADMIN = "admin"
VALIDATOR = "validator"
POLICY = "policy"
REVIEW_NOTIFIER = "review-notifier"
DEPLOYER = "deployer"
OPERATOR = "operator"
PIPELINE = "pipeline"  # the default pipeline principal; a team's is named as it likes (--pipeline)
CONSOLE = "console"  # the web console (services/console): reads every topic, re-drives dead letters
SERVICES = (VALIDATOR, POLICY, REVIEW_NOTIFIER, DEPLOYER)
# The principal each service module (services/<module>) runs as.
SERVICE_OF_MODULE = {"validator": VALIDATOR, "policy": POLICY, "review_notifier": REVIEW_NOTIFIER,
                     "deployer": DEPLOYER}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

PIPELINES = "<pipelines>"  # stands for every pipeline principal in the table below
OPERATORS = "<operators>"


class ResourceType(IntEnum):
    """Kafka's AclResourceType codes."""
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4


class PatternType(IntEnum):
    ANY = 1
    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12


class Permission(IntEnum):
    ANY = 1
    DENY = 2
    ALLOW = 3


@dataclass(frozen=True)
class Rule:
    """One topic: who writes it, which services consume it in groups, who reads it group-less."""
    topic: str
    writers: tuple[str, ...]
    consumers: tuple[str, ...] = ()
    followers: tuple[str, ...] = ()  # services reading it group-less (state they rebuild, facts)


RULES: tuple[Rule, ...] = (
    Rule(topics.MODEL_SUBMITTED, (PIPELINES,), (VALIDATOR,)),
    Rule(topics.CHECKS_PASSED, (VALIDATOR,), (POLICY, DEPLOYER)),
    Rule(topics.CHECKS_FAILED, (VALIDATOR,), (POLICY, DEPLOYER)),
    Rule(topics.REVIEW_REQUESTED, (POLICY,), (REVIEW_NOTIFIER,)),
    Rule(topics.REVIEW_DECIDED, (POLICY, REVIEW_NOTIFIER), (DEPLOYER,), (POLICY, DEPLOYER)),
    Rule(topics.REVIEW_ESCALATED, (REVIEW_NOTIFIER,)),
    Rule(topics.ROLLBACK_REQUESTED, (OPERATORS,), (DEPLOYER,)),
    Rule(topics.REVOCATION_REQUESTED, (OPERATORS,), (DEPLOYER,)),
    Rule(topics.DEPLOYMENT_SUCCEEDED, (DEPLOYER,), (), (VALIDATOR, POLICY, REVIEW_NOTIFIER)),
    Rule(topics.DEPLOYMENT_FAILED, (DEPLOYER,)),
    Rule(topics.DEPLOYMENT_PROGRESSED, (DEPLOYER,)),
    Rule(topics.DEPLOYMENT_ROLLED_BACK, (DEPLOYER,), (), (VALIDATOR, POLICY, REVIEW_NOTIFIER)),
    Rule(topics.DEPLOYMENT_REVOKED, (DEPLOYER,), (), (VALIDATOR, POLICY, REVIEW_NOTIFIER)),
    Rule(topics.DEPLOYMENT_SUPERSEDED, (DEPLOYER,)),
    Rule(topics.DEPLOYMENT_DRIFTED, (DEPLOYER,)),  # read by operators and pipelines, like every record
)


@dataclass(frozen=True, order=True)
class Binding:
    """One ALLOW ACL, as Kafka stores it (host is always "*")."""
    principal: str  # "User:<name>"
    resource_type: ResourceType
    resource_name: str
    pattern_type: PatternType
    operation: Operation
    permission: Permission = Permission.ALLOW
    host: str = field(default="*", compare=True)

    def __str__(self) -> str:
        pattern = "" if self.pattern_type == PatternType.LITERAL else f" ({self.pattern_type.name.lower()})"
        return (f"{self.permission.name} {self.principal} {self.operation.name} "
                f"{self.resource_type.name.lower()} {self.resource_name}{pattern}")


def user(name: str) -> str:
    return f"User:{name}"


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ValueError(f"principal {name!r}: letters, digits, '.', '_' or '-', at most 64, not starting with "
                         "a punctuation mark")
    return name


@dataclass(frozen=True)
class Table:
    """RULES for a given set of pipeline and operator principals and consumer-group prefix."""
    pipelines: tuple[str, ...] = (PIPELINE,)
    operators: tuple[str, ...] = (OPERATOR,)
    group_prefix: str = "signoff"

    def __post_init__(self) -> None:
        for name in (*self.pipelines, *self.operators):
            check_name(name)
        if not self.pipelines or not self.operators:
            raise ValueError("at least one pipeline principal and one operator principal")
        if clash := set(self.pipelines) & ({ADMIN, CONSOLE, *SERVICES} | set(self.operators)):
            raise ValueError(f"a pipeline principal cannot also be a service, the admin or an operator: "
                             f"{sorted(clash)}")
        if set(self.operators) & {ADMIN, CONSOLE, *SERVICES}:
            raise ValueError("an operator principal cannot be the admin, the console or a service")

    def expand(self, names: Iterable[str]) -> list[str]:
        out: list[str] = []
        for name in names:
            out += self.pipelines if name == PIPELINES else self.operators if name == OPERATORS else [name]
        return out

    @property
    def principals(self) -> tuple[str, ...]:
        """Every principal the table grants something to."""
        return (*SERVICES, *self.pipelines, *self.operators, CONSOLE)

    def group(self, service: str) -> str:
        """The prefix of the consumer groups `service` may use."""
        return f"{self.group_prefix}-{service}."

    def allows(self, name: str, operation: Operation, topic: str) -> bool:
        """Whether the table lets principal `name` do `operation` on `topic`."""
        return Binding(user(name), ResourceType.TOPIC, topic, PatternType.LITERAL, operation) in self.bindings()

    def bindings(self) -> set[Binding]:
        out: set[Binding] = set()

        def topic_acl(name: str, topic: str, *ops: Operation) -> None:
            for op in ops:
                out.add(Binding(user(name), ResourceType.TOPIC, topic, PatternType.LITERAL, op))

        readers = (*self.pipelines, *self.operators)
        for rule in RULES:
            for name in self.expand(rule.writers):
                topic_acl(name, rule.topic, Operation.WRITE, Operation.DESCRIBE)
            for name in (*rule.consumers, *rule.followers, *readers):
                topic_acl(name, rule.topic, Operation.READ, Operation.DESCRIBE)
            for service in rule.consumers:
                topic_acl(service, topics.dlq(rule.topic), Operation.WRITE, Operation.DESCRIBE)
            for name in self.operators:  # operators inspect dead letters
                topic_acl(name, topics.dlq(rule.topic), Operation.READ, Operation.DESCRIBE)
                if rule.consumers:
                    # ... and re-drive them (shared/dlq.py): the original record with its original
                    # signature, which its consumer verifies again. Writing here forges nothing: an
                    # event is acted on only when signed by a key of its type's role (shared.signing).
                    topic_acl(name, rule.topic, Operation.WRITE, Operation.DESCRIBE)
            # The console shows every record and dead letter, and writes a consumed topic only to
            # re-drive a dead letter there (an operator's request, the record's own bytes and signature).
            topic_acl(CONSOLE, rule.topic, Operation.READ, Operation.DESCRIBE)
            topic_acl(CONSOLE, topics.dlq(rule.topic), Operation.READ, Operation.DESCRIBE)  # as operators do
            if rule.consumers:
                topic_acl(CONSOLE, rule.topic, Operation.WRITE)
        for service in SERVICES:
            for topic in topics.ALL_TOPICS:  # start-up checks the topics and their configs (shared/topic_admin.py)
                topic_acl(service, topic, Operation.DESCRIBE, Operation.DESCRIBE_CONFIGS)
            if any(service in rule.consumers for rule in RULES):
                out.add(Binding(user(service), ResourceType.GROUP, self.group(service), PatternType.PREFIXED,
                                Operation.READ))
        # A dead-letter topic nobody consumes into is not a Signoff topic: no ACL names it.
        return {b for b in out if b.resource_type != ResourceType.TOPIC or b.resource_name in topics.ALL_TOPICS}

    def manages(self, binding: Binding) -> bool:
        """Whether `acl apply` owns this ACL (and deletes it when the table no longer has it): it
        is on a Signoff topic or consumer group, or names one of the table's principals. Other
        ACLs on the cluster are left alone."""
        return (binding.resource_type == ResourceType.TOPIC and binding.resource_name in topics.ALL_TOPICS
                or binding.resource_type == ResourceType.GROUP
                and binding.resource_name.startswith(f"{self.group_prefix}-")
                or binding.principal in {user(p) for p in self.principals})


@dataclass(frozen=True)
class Diff:
    create: tuple[Binding, ...]
    delete: tuple[Binding, ...]

    def __bool__(self) -> bool:
        return bool(self.create or self.delete)

    def lines(self) -> list[str]:
        if not self:
            return ["no changes"]
        return [f"+ {b}" for b in self.create] + [f"- {b}" for b in self.delete]


def diff(table: Table, existing: Sequence[Binding]) -> Diff:
    """What to create and delete so the cluster's Signoff ACLs are exactly the table's."""
    want = table.bindings()
    have = set(existing)
    return Diff(create=tuple(sorted(want - have)),
                delete=tuple(sorted(b for b in have - want if table.manages(b))))
