variable "name" {
  description = "Name of the VPC and prefix of its resources (e.g. recsys-staging)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,40}$", var.name))
    error_message = "name: lower-case letters, digits and dashes, 3-41 characters, starting with a letter."
  }
}

variable "cidr" {
  description = "IPv4 CIDR of the VPC; a /16 leaves room for the /20 private, /24 public and /24 database subnets."
  type        = string
  default     = "10.0.0.0/16"

  validation {
    condition     = can(cidrhost(var.cidr, 0)) && tonumber(split("/", var.cidr)[1]) <= 16
    error_message = "cidr must be a valid IPv4 CIDR block of /16 or larger."
  }
}

variable "azs" {
  description = "Availability zones (names, e.g. eu-west-1a) to spread the subnets over: EKS and RDS Multi-AZ need 2."
  type        = list(string)

  validation {
    condition     = length(var.azs) >= 2 && length(var.azs) <= 3 && length(distinct(var.azs)) == length(var.azs)
    error_message = "azs must name 2 or 3 distinct availability zones."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all AZs (cheaper, one AZ's outage cuts egress) instead of one per AZ."
  type        = bool
  default     = false
}

variable "cluster_name" {
  description = "EKS cluster name the subnets are tagged for (load-balancer discovery)."
  type        = string
}

variable "flow_log_retention_days" {
  description = "Days the VPC flow logs are kept in CloudWatch."
  type        = number
  default     = 90

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.flow_log_retention_days)
    error_message = "flow_log_retention_days must be a CloudWatch Logs retention value (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, ...)."
  }
}

variable "kms_key_arn" {
  description = "KMS key that encrypts the flow-log group."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
