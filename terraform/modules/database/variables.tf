variable "identifier" {
  description = "RDS instance identifier (e.g. recsys-staging)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,62}$", var.identifier))
    error_message = "identifier: lower-case letters, digits and dashes, 3-63 characters, starting with a letter."
  }
}

variable "engine_version" {
  description = "PostgreSQL major version (minor versions follow AWS's automatic upgrades)."
  type        = string
  default     = "16"

  validation {
    condition     = contains(["15", "16", "17"], var.engine_version)
    error_message = "engine_version must be 15, 16 or 17 (the versions the tests run against PostgreSQL 15+)."
  }
}

variable "instance_class" {
  description = "DB instance class."
  type        = string
  default     = "db.t4g.medium"

  validation {
    condition     = startswith(var.instance_class, "db.")
    error_message = "instance_class must be an RDS class such as db.t4g.medium."
  }
}

variable "allocated_storage_gb" {
  description = "Initial storage in GiB (gp3)."
  type        = number
  default     = 20

  validation {
    condition     = var.allocated_storage_gb >= 20
    error_message = "allocated_storage_gb must be at least 20 (the gp3 minimum)."
  }
}

variable "max_allocated_storage_gb" {
  description = "Storage autoscaling ceiling in GiB."
  type        = number
  default     = 100
}

variable "multi_az" {
  description = "A synchronous standby in a second AZ (production); off saves half the instance cost (staging)."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Refuse to delete the instance (production: always on)."
  type        = bool
  default     = true
}

variable "backup_retention_days" {
  description = "Days automated backups (point-in-time recovery) are kept."
  type        = number
  default     = 14

  validation {
    condition     = var.backup_retention_days >= 7 && var.backup_retention_days <= 35
    error_message = "backup_retention_days must be between 7 and 35."
  }
}

variable "skip_final_snapshot" {
  description = "Destroy without a final snapshot (staging only)."
  type        = bool
  default     = false
}

variable "vpc_id" {
  description = "VPC of the database security group."
  type        = string
}

variable "db_subnet_group_name" {
  description = "DB subnet group over the isolated database subnets."
  type        = string
}

variable "allowed_security_group_ids" {
  description = "Security groups admitted on 5432 (the EKS nodes)."
  type        = list(string)

  validation {
    condition     = length(var.allowed_security_group_ids) > 0
    error_message = "allowed_security_group_ids needs at least one security group (else nothing can reach the database)."
  }
}

variable "kms_key_arn" {
  description = "KMS key of the storage, Performance Insights, the exported logs and the master-password secret."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
