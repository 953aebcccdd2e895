variable "name" {
  description = "Secret name in Secrets Manager; the cluster syncs it into the Kubernetes Secret recsys-secrets."
  type        = string
  default     = "recsys-secrets"

  validation {
    condition     = can(regex("^[A-Za-z0-9/_+=.@-]{1,512}$", var.name))
    error_message = "name: the characters Secrets Manager allows in a secret name."
  }
}

variable "environment" {
  description = "Environment (staging or production): the secret is named <environment>/<name>."
  type        = string

  validation {
    condition     = contains(["staging", "production"], var.environment)
    error_message = "environment must be staging or production."
  }
}

variable "kms_key_arn" {
  description = "KMS key encrypting the secret."
  type        = string
}

variable "recovery_window_in_days" {
  description = "Days a deleted secret can still be restored (0 deletes at once; 7-30 otherwise)."
  type        = number
  default     = 30

  validation {
    condition     = var.recovery_window_in_days == 0 || (var.recovery_window_in_days >= 7 && var.recovery_window_in_days <= 30)
    error_message = "recovery_window_in_days must be 0 or between 7 and 30."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
