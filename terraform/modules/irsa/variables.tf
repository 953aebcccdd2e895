variable "name" {
  description = "Prefix of the role names (e.g. recsys-staging)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name: lower-case letters, digits and dashes, 3-31 characters."
  }
}

variable "oidc_provider_arn" {
  description = "ARN of the EKS cluster's IAM OIDC provider."
  type        = string
}

variable "oidc_provider" {
  description = "The OIDC issuer host/path without https:// (the trust condition's key prefix)."
  type        = string
}

variable "namespace" {
  description = "Namespace of the application's service accounts (recommender, recsys-pipeline, mlflow)."
  type        = string
  default     = "recsys"
}

variable "airflow_namespace" {
  description = "Namespace of the Airflow Helm release."
  type        = string
  default     = "recsys"
}

variable "airflow_service_accounts" {
  description = "Service accounts of the Airflow Helm chart's components (<release>-<component>) that write task logs to S3."
  type        = list(string)
  default     = ["airflow-scheduler", "airflow-worker", "airflow-triggerer", "airflow-dag-processor", "airflow-api-server"]
}

variable "external_secrets_namespace" {
  description = "Namespace of the External Secrets Operator."
  type        = string
  default     = "external-secrets"
}

variable "external_secrets_service_account" {
  description = "Service account of the External Secrets Operator."
  type        = string
  default     = "external-secrets"
}

variable "mlflow_artifacts_bucket_arn" {
  description = "ARN of the MLflow artifacts bucket."
  type        = string
}

variable "dvc_remote_bucket_arn" {
  description = "ARN of the DVC remote bucket."
  type        = string
}

variable "secret_arns" {
  description = "Secrets Manager ARNs External Secrets may read (recsys-secrets; the RDS master secret for the bootstrap job)."
  type        = list(string)
}

variable "kms_key_arn" {
  description = "KMS key of the buckets, the secrets and the node volumes."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
