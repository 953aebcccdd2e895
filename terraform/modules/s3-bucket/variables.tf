variable "bucket" {
  description = "Globally unique bucket name."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket))
    error_message = "bucket must be a valid S3 bucket name (3-63 lower-case letters, digits, dots, dashes)."
  }
}

variable "kms_key_arn" {
  description = "KMS key of the default encryption (SSE-KMS with an S3 Bucket Key)."
  type        = string
}

variable "log_bucket" {
  description = "Bucket receiving this bucket's server access logs."
  type        = string
}

variable "log_prefix" {
  description = "Key prefix of this bucket's access logs in log_bucket."
  type        = string
}

variable "noncurrent_version_days" {
  description = "Days a replaced or deleted object version is kept (the undo window)."
  type        = number
  default     = 90
}

variable "force_destroy" {
  description = "Let terraform destroy delete the bucket while it holds objects."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags of the bucket."
  type        = map(string)
  default     = {}
}
