variable "name" {
  description = "Prefix of the bucket names (e.g. recsys-staging); the account id is appended for global uniqueness."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name: lower-case letters, digits and dashes, 3-31 characters (bucket names are at most 63)."
  }
}

variable "kms_key_arn" {
  description = "KMS key of the buckets' default encryption (SSE-KMS with S3 Bucket Keys)."
  type        = string
}

variable "noncurrent_version_days" {
  description = "Days an overwritten or deleted object version is kept before it expires (the undo window)."
  type        = number
  default     = 90

  validation {
    condition     = var.noncurrent_version_days >= 1
    error_message = "noncurrent_version_days must be at least 1."
  }
}

variable "access_log_retention_days" {
  description = "Days the S3 server access logs are kept."
  type        = number
  default     = 365
}

variable "force_destroy" {
  description = "Let terraform destroy delete non-empty buckets (staging only; never for production's model artifacts)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
