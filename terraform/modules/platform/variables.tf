# -- identity ----------------------------------------------------------------------------------------------------
variable "environment" {
  description = "Environment name: resources are named recsys-<environment>, the secret <environment>/recsys-secrets."
  type        = string

  validation {
    condition     = contains(["staging", "production"], var.environment)
    error_message = "environment must be staging or production."
  }
}

variable "region" {
  description = "AWS region of the environment (the AZ names are <region>a, <region>b, ...; the region output)."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource (the env root's provider default_tags carry the same)."
  type        = map(string)
  default     = {}
}

# -- network -----------------------------------------------------------------------------------------------------
variable "vpc_cidr" {
  description = "IPv4 CIDR of the VPC (/16); distinct per environment so that the VPCs could be peered."
  type        = string

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 16
    error_message = "vpc_cidr must be a valid IPv4 CIDR block of /16 or larger."
  }
}

variable "az_count" {
  description = "Availability zones to spread the subnets over (2 or 3): EKS and RDS Multi-AZ need 2."
  type        = number

  validation {
    condition     = contains([2, 3], var.az_count)
    error_message = "az_count must be 2 or 3."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all AZs (cheaper; one AZ's outage cuts egress) instead of one per AZ."
  type        = bool
}

variable "log_retention_days" {
  description = "Days the VPC flow logs and the EKS control-plane logs are kept in CloudWatch."
  type        = number

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch Logs retention value (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, ...)."
  }
}

# -- deletion windows --------------------------------------------------------------------------------------------
variable "kms_deletion_window_days" {
  description = "Days a scheduled deletion of the environment's KMS key waits (7-30)."
  type        = number

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be between 7 and 30."
  }
}

variable "secret_recovery_window_days" {
  description = "Days a deleted recsys secret can still be restored (0 deletes at once; 7-30 otherwise)."
  type        = number

  validation {
    condition     = var.secret_recovery_window_days == 0 || (var.secret_recovery_window_days >= 7 && var.secret_recovery_window_days <= 30)
    error_message = "secret_recovery_window_days must be 0 or between 7 and 30."
  }
}

# -- images and deployment ---------------------------------------------------------------------------------------
variable "keep_images" {
  description = "Tagged images kept per ECR repository (older ones expire; a rollback needs the last few)."
  type        = number

  validation {
    condition     = var.keep_images >= 5
    error_message = "keep_images must be at least 5 so that recent releases stay available for rollback."
  }
}

variable "ecr_pull_principal_arns" {
  description = "IAM roles of other accounts allowed to pull this environment's images (staging: production's deploy role)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.ecr_pull_principal_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(role|root)", a))])
    error_message = "ecr_pull_principal_arns must be IAM role (or account root) ARNs."
  }
}

variable "pull_repository_arns" {
  description = "ECR repositories of another account the deploy role may pull from (production: staging's, for promotion)."
  type        = list(string)
  default     = []
}

variable "github_repository" {
  description = "owner/name of the GitHub repository whose CD workflow deploys here."
  type        = string
}

variable "github_environments" {
  description = "GitHub environments whose jobs may assume the deploy role (staging: build and deploy; production: promotion only)."
  type        = list(string)

  validation {
    condition     = length(var.github_environments) > 0 && alltrue([for e in var.github_environments : contains(["staging", "production"], e)])
    error_message = "github_environments: at least one of staging, production (the environments cd.yml uses)."
  }
}

variable "create_github_oidc_provider" {
  description = "Create the account's GitHub OIDC provider (false when another environment in the same account already did)."
  type        = bool
  default     = true
}

# -- cluster -----------------------------------------------------------------------------------------------------
variable "eks_public_access_cidrs" {
  description = "CIDRs allowed to the public EKS API endpoint; empty keeps the endpoint private."
  type        = list(string)
  default     = []
}

variable "admin_role_arns" {
  description = "IAM roles granted cluster-admin (the platform team's SSO role)."
  type        = list(string)
  default     = []
}

variable "node_instance_types" {
  description = "Instance types of the managed node group, in order of preference (several let SPOT find capacity)."
  type        = list(string)
  default     = ["m6i.large", "m5.large", "m6a.large"]
}

variable "node_capacity_type" {
  description = "Node purchase option: SPOT (cheap, interruptible) or ON_DEMAND."
  type        = string

  validation {
    condition     = contains(["ON_DEMAND", "SPOT"], var.node_capacity_type)
    error_message = "node_capacity_type must be ON_DEMAND or SPOT."
  }
}

variable "node_min_size" {
  description = "Fewest nodes of the node group."
  type        = number

  validation {
    condition     = var.node_min_size >= 1
    error_message = "node_min_size must be at least 1."
  }
}

variable "node_max_size" {
  description = "Most nodes of the node group."
  type        = number

  validation {
    condition     = var.node_max_size >= 1
    error_message = "node_max_size must be at least 1."
  }
}

variable "node_desired_size" {
  description = "Nodes the group starts with (between node_min_size and node_max_size)."
  type        = number

  validation {
    condition     = var.node_desired_size >= 1
    error_message = "node_desired_size must be at least 1."
  }
}

# -- storage -----------------------------------------------------------------------------------------------------
variable "noncurrent_version_days" {
  description = "Days a replaced or deleted S3 object version is kept (the undo window of the data buckets)."
  type        = number

  validation {
    condition     = var.noncurrent_version_days >= 1
    error_message = "noncurrent_version_days must be at least 1."
  }
}

variable "force_destroy" {
  description = "Let terraform destroy delete non-empty buckets (staging only; never for production's model artifacts)."
  type        = bool
}

# -- database ----------------------------------------------------------------------------------------------------
variable "db_instance_class" {
  description = "RDS instance class of the PostgreSQL instance."
  type        = string

  validation {
    condition     = startswith(var.db_instance_class, "db.")
    error_message = "db_instance_class must be an RDS class such as db.t4g.medium."
  }
}

variable "db_allocated_storage_gb" {
  description = "Initial database storage in GiB (gp3, at least 20)."
  type        = number

  validation {
    condition     = var.db_allocated_storage_gb >= 20
    error_message = "db_allocated_storage_gb must be at least 20 (the gp3 minimum)."
  }
}

variable "db_max_allocated_storage_gb" {
  description = "Storage autoscaling ceiling in GiB (at least the initial storage)."
  type        = number

  validation {
    condition     = var.db_max_allocated_storage_gb >= 20
    error_message = "db_max_allocated_storage_gb must be at least 20."
  }
}

variable "db_multi_az" {
  description = "A synchronous standby in a second AZ (production); off halves the instance cost (staging)."
  type        = bool
}

variable "db_deletion_protection" {
  description = "Refuse to delete the database instance (production: always on)."
  type        = bool
}

variable "db_backup_retention_days" {
  description = "Days automated backups (point-in-time recovery) are kept (7-35)."
  type        = number

  validation {
    condition     = var.db_backup_retention_days >= 7 && var.db_backup_retention_days <= 35
    error_message = "db_backup_retention_days must be between 7 and 35."
  }
}

variable "db_skip_final_snapshot" {
  description = "Destroy the database without a final snapshot (staging only)."
  type        = bool
}
