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

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
