variable "repositories" {
  description = "ECR repository names (the images of the naming contract)."
  type        = list(string)
  default     = ["recsys-pipeline", "recsys-airflow", "recsys-serving"]

  validation {
    condition     = alltrue([for r in var.repositories : can(regex("^[a-z][a-z0-9._/-]{1,255}$", r))])
    error_message = "repositories: lower-case ECR names."
  }
}

variable "kms_key_arn" {
  description = "KMS key encrypting the images at rest."
  type        = string
}

variable "keep_images" {
  description = "Tagged images kept per repository (older ones expire; a rollback needs the last few)."
  type        = number
  default     = 30

  validation {
    condition     = var.keep_images >= 5
    error_message = "keep_images must be at least 5 so that recent releases stay available for rollback."
  }
}

variable "pull_principal_arns" {
  description = "IAM principals of other accounts allowed to pull (the production deploy role copies staging's tested images)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.pull_principal_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(role|root)", a))])
    error_message = "pull_principal_arns must be IAM role (or account root) ARNs."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
