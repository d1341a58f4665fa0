"""Which workflow decides for a model, and a workflow as loaded: its texts and their policy digest,
its groups and its compiled conditions. Pure: conditions arrive compiled (`shared.workflow.loading`) behind the
`Condition` protocol, so the services' decisions can use them without importing CEL.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.values import PolicyDocuments, PolicyRef
from shared.workflow.schema import Workflow


class ConditionError(ValueError):
    """A condition that does not compile, or cannot be evaluated over a submission."""


class Condition(Protocol):
    expression: str

    def __call__(self, context: Mapping[str, Any]) -> bool:
        """True or false over `context`; raises ConditionError otherwise."""
        ...


@dataclass(frozen=True)
class Loaded:
    """A validated workflow, the texts it was read from (the file and groups.yaml beside it), their
    policy digest (`digest`: changes when either text changes), and its compiled conditions."""

    workflow: Workflow
    documents: PolicyDocuments
    source: str
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    programs: dict[str, Condition] = field(default_factory=dict)
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", self.documents.digest())

    def policy_documents(self) -> PolicyDocuments:
        """The texts in force, for decisions to carry (the audit shows exactly what decided)."""
        return self.documents

    def ref(self, rule: str, *, with_documents: bool = True) -> PolicyRef:
        """This workflow as a decision names it: `rule` decided, under these texts."""
        return PolicyRef(name=self.workflow.name, rule=rule, digest=self.digest,
                         documents=self.documents if with_documents else None)

    def approvers(self) -> tuple[str, ...]:
        """The approval step's approvers with each `group:x` replaced by its members."""
        approval = self.workflow.approval
        return self.expand(approval.inputs.approvers) if approval else ()

    def expand(self, entries: tuple[str, ...]) -> tuple[str, ...]:
        """Users and `group:x` entries as the users they name, each once, in order."""
        out: list[str] = []
        for entry in entries:
            members = self.groups[entry[6:]] if entry.startswith("group:") else (entry,)
            out.extend(m for m in members if m not in out)
        return tuple(out)


@dataclass(frozen=True)
class WorkflowSet:
    workflows: tuple[Loaded, ...]

    @property
    def digest(self) -> str:
        """sha256 over every workflow's policy digest (so groups.yaml too): identifies the whole set,
        for decisions that no single workflow made (a model that no workflow matches), and tells a
        service that the folder changed under it."""
        lines = sorted(f"{w.source}:{w.digest}" for w in self.workflows)
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()

    def match(self, model: str) -> tuple[Loaded | None, str]:
        """The workflow for `model` (most specific pattern wins), or None with the reason."""
        best: list[tuple[int, Loaded]] = []
        for loaded in self.workflows:
            lengths = [len(p) for p in loaded.workflow.match if fnmatch.fnmatchcase(model, p)]
            if lengths:
                best.append((max(lengths), loaded))
        if best:
            best.sort(key=lambda item: -item[0])
            if len(best) > 1 and best[0][0] == best[1][0]:
                names = ", ".join(b[1].workflow.name for b in best if b[0] == best[0][0])
                return None, (f"model {model!r} matches several workflows equally ({names}); "
                              "make one pattern more specific")
            return best[0][1], ""
        default = next((w for w in self.workflows if w.workflow.default), None)
        if default is None:
            return None, f"no workflow matches model {model!r} and no default workflow is configured"
        return default, ""


