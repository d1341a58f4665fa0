"""validator: runs the automated checks on model.submitted, emits checks.passed or checks.failed."""

SERVICE = "validator"
