# Only the secret's container: its value (the SQLAlchemy URLs with per-database passwords, RECSYS_ADMIN_TOKEN,
# RECSYS_SLACK_WEBHOOK_URL, RECSYS_SMTP_PASSWORD, Airflow's JWT secret) is put there out of band
# (aws secretsmanager put-secret-value, docs/infrastructure.md), so no secret value enters Terraform state or git.
resource "aws_secretsmanager_secret" "this" {
  #checkov:skip=CKV2_AWS_57:The values are third-party credentials (Slack webhook, SMTP) and per-database passwords rotated by a documented runbook, not by a rotation Lambda; the RDS master password is rotated by RDS itself.
  name                    = "${var.environment}/${var.name}"
  description             = "recsys ${var.environment}: the keys of the Kubernetes Secret recsys-secrets"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.recovery_window_in_days
  tags                    = var.tags
}
