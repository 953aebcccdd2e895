variable "cluster_name" {
  description = "Name of the EKS cluster (e.g. recsys-staging)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,60}$", var.cluster_name))
    error_message = "cluster_name: lower-case letters, digits and dashes, 3-61 characters, starting with a letter."
  }
}

variable "kubernetes_version" {
  description = "Kubernetes <major>.<minor> of the control plane and the managed node groups."
  type        = string
  default     = "1.33"

  validation {
    condition     = can(regex("^1\\.[0-9]{2}$", var.kubernetes_version))
    error_message = "kubernetes_version must look like 1.33."
  }
}

variable "vpc_id" {
  description = "VPC of the cluster."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the nodes and the control-plane ENIs."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "EKS needs subnets in at least two availability zones."
  }
}

variable "endpoint_public_access" {
  description = "Expose the API server endpoint publicly (restricted to endpoint_public_access_cidrs). Off: only from inside the VPC (a self-hosted deploy runner, a VPN or a bastion)."
  type        = bool
  default     = false
}

variable "endpoint_public_access_cidrs" {
  description = "CIDRs allowed to the public API endpoint when it is enabled; never 0.0.0.0/0."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.endpoint_public_access_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "endpoint_public_access_cidrs must be valid CIDRs and must not contain 0.0.0.0/0."
  }
}

variable "node_instance_types" {
  description = "Instance types of the managed node group (the first is preferred)."
  type        = list(string)
  default     = ["m6i.large"]

  validation {
    condition     = length(var.node_instance_types) > 0
    error_message = "node_instance_types needs at least one instance type."
  }
}

variable "node_capacity_type" {
  description = "ON_DEMAND or SPOT for the managed node group."
  type        = string
  default     = "ON_DEMAND"

  validation {
    condition     = contains(["ON_DEMAND", "SPOT"], var.node_capacity_type)
    error_message = "node_capacity_type must be ON_DEMAND or SPOT."
  }
}

variable "node_min_size" {
  description = "Minimum nodes of the managed node group."
  type        = number
  default     = 2

  validation {
    condition     = var.node_min_size >= 1
    error_message = "node_min_size must be at least 1."
  }
}

variable "node_max_size" {
  description = "Maximum nodes of the managed node group (the cluster autoscaler's ceiling)."
  type        = number
  default     = 4
}

variable "node_desired_size" {
  description = "Nodes the group starts with (later managed by the autoscaler; ignored on update by the upstream module)."
  type        = number
  default     = 2
}

variable "node_disk_size_gb" {
  description = "Root volume (gp3, encrypted) of each node in GiB: images plus the LightGBM bundle cache."
  type        = number
  default     = 50

  validation {
    condition     = var.node_disk_size_gb >= 20 && var.node_disk_size_gb <= 500
    error_message = "node_disk_size_gb must be between 20 and 500."
  }
}

variable "log_retention_days" {
  description = "Days the control-plane logs are kept in CloudWatch."
  type        = number
  default     = 90
}

variable "kms_key_arn" {
  description = "KMS key encrypting Kubernetes Secrets (envelope encryption), the control-plane log group and node volumes."
  type        = string
}

variable "deploy_role_arn" {
  description = "IAM role the CD workflow assumes (GitHub OIDC); it gets edit rights in the namespace below only."
  type        = string
}

variable "deploy_namespaces" {
  description = "Namespaces the CD role may edit (the application namespace and Argo Rollouts' objects in it)."
  type        = list(string)
  default     = ["recsys"]
}

variable "admin_role_arns" {
  description = "IAM roles (e.g. the platform team's SSO role) granted cluster-admin through EKS access entries."
  type        = list(string)
  default     = []
}

variable "ebs_csi_role_arn" {
  description = "IRSA role of the EBS CSI driver add-on (volumes of Airflow's logs and the Prometheus data)."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
