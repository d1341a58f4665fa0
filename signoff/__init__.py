"""The `signoff` client and CLI: what training jobs, reviewers and operators call."""
