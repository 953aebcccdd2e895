variable "region" {
  description = "AWS region of the environment."
  type        = string
  default     = "eu-west-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as eu-west-1."
  }
}

variable "github_repository" {
  description = "owner/name of the GitHub repository whose CD workflow deploys here."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "github_repository must be owner/name."
  }
}

variable "create_github_oidc_provider" {
  description = "Create the account's GitHub OIDC provider here (false when another environment in the same account already did)."
  type        = bool
  default     = true
}

variable "eks_public_access_cidrs" {
  description = "CIDRs allowed to the public EKS API endpoint; empty keeps the endpoint private (deploy from a runner inside the VPC)."
  type        = list(string)
  default     = []

  validation {
    condition     = !contains(var.eks_public_access_cidrs, "0.0.0.0/0")
    error_message = "eks_public_access_cidrs must not contain 0.0.0.0/0."
  }
}

variable "production_deploy_role_arn" {
  description = "The production account's GitHub deploy role (its terraform output github_deploy_role_arn), allowed to pull staging's images for promotion; empty until production exists."
  type        = string
  default     = ""

  validation {
    condition     = var.production_deploy_role_arn == "" || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/", var.production_deploy_role_arn))
    error_message = "production_deploy_role_arn must be an IAM role ARN or empty."
  }
}

variable "admin_role_arns" {
  description = "IAM roles granted cluster-admin (the platform team's SSO role)."
  type        = list(string)
  default     = []
}
