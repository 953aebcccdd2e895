variable "name" {
  description = "Name of the deploy role (e.g. recsys-staging-github-deploy)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", var.name))
    error_message = "name: an IAM role name (at most 64 characters)."
  }
}

variable "create_oidc_provider" {
  description = "Create the account's token.actions.githubusercontent.com OIDC provider (once per account: the second environment in the same account sets this false)."
  type        = bool
  default     = true
}

variable "github_repository" {
  description = "owner/name of the repository whose workflows may assume the role."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "github_repository must be owner/name."
  }
}

variable "github_environments" {
  description = "GitHub environments whose jobs may assume the role (the sub claim repo:<owner/name>:environment:<env>)."
  type        = list(string)

  validation {
    condition     = length(var.github_environments) > 0
    error_message = "At least one GitHub environment: the role is never assumable from an arbitrary branch or PR."
  }
}

variable "ecr_repository_arns" {
  description = "ECR repositories the workflows push to."
  type        = list(string)
}

variable "pull_repository_arns" {
  description = "ECR repositories of another account to pull from (production: staging's, to copy the tested images)."
  type        = list(string)
  default     = []
}

variable "cluster_name" {
  description = "EKS cluster the deploy job reaches (eks:DescribeCluster for update-kubeconfig)."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
