"""policy: decides on checks.passed / checks.failed: approve automatically, ask for review, or reject."""

SERVICE = "policy"
