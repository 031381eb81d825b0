"""Keeping secrets out of output, and the least-privilege database roles (docs/security.md)."""
