"""review-notifier: asks the named approvers on review.requested and emits their review.decided."""

SERVICE = "review-notifier"
