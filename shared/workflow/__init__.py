"""Approval workflows: `schema` (the file format), `matching` (which workflow decides for a
model), `loading` (YAML, CEL, groups; I/O), `conditions` (CEL, compiled with cel-python)."""
