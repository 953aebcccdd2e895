"""Model registry: tracking, the promotion gate, approvals, the audit log and rollback."""
