from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class PolicySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="POLICY_", extra="ignore", frozen=True)

    name: str = Field(default="default", description="Name of the policy, recorded in every decision")
    auto_approve_min: dict[str, float] = Field(
        default_factory=lambda: {"accuracy": 0.9},
        description='Approve without a human when every metric is at least this, JSON: {"accuracy": 0.9}',
    )
    approvers: tuple[str, ...] = Field(
        default=("alice", "bob"), min_length=1,
        description='Who may approve when a review is needed, JSON list: ["alice", "bob"]',
    )
    quorum: int = Field(default=1, ge=1, description="Approvals needed")
