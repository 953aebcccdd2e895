# The role GitHub Actions assumes with its OIDC token (aws-actions/configure-aws-credentials, role-to-assume): no
# long-lived AWS keys in GitHub. The trust admits only this repository's jobs that run in the named GitHub
# environments, so a fork's PR or an unprotected branch cannot assume it.
data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  provider_url = "token.actions.githubusercontent.com"
  provider_arn = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:oidc-provider/${local.provider_url}"
}

resource "aws_iam_openid_connect_provider" "github" {
  count          = var.create_oidc_provider ? 1 : 0
  url            = "https://${local.provider_url}"
  client_id_list = ["sts.amazonaws.com"]
  # AWS validates GitHub's certificate through its own trust store; the thumbprint is kept for older providers.
  thumbprint_list = ["6938fd4d98bab03faadb97b34396831e3780aea1"]
  tags            = var.tags
}

data "aws_iam_policy_document" "trust" {
  #checkov:skip=CKV_AWS_358:The sub is exactly repo:<owner/name>:environment:<env> (no wildcard); checkov cannot resolve var.github_repository to see the owner/name form. Environment-scoped subjects let GitHub's required reviewers gate the role.
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [local.provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.provider_url}:aud"
      values   = ["sts.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.provider_url}:sub"
      values   = [for env in var.github_environments : "repo:${var.github_repository}:environment:${env}"]
    }
  }
}

resource "aws_iam_role" "deploy" {
  name                 = var.name
  description          = "GitHub Actions (${var.github_repository}, environments ${join(", ", var.github_environments)}): push images, deploy"
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  max_session_duration = 3600
  tags                 = var.tags
  depends_on           = [aws_iam_openid_connect_provider.github]
}

data "aws_iam_policy_document" "deploy" {
  #checkov:skip=CKV_AWS_356:ecr:GetAuthorizationToken does not support resource-level permissions; it only issues a registry login.
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }
  statement {
    sid = "EcrPush"
    actions = [
      "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:CompleteLayerUpload", "ecr:DescribeImages",
      "ecr:DescribeImageScanFindings", "ecr:GetDownloadUrlForLayer", "ecr:InitiateLayerUpload", "ecr:PutImage",
      "ecr:UploadLayerPart",
    ]
    resources = var.ecr_repository_arns
  }
  statement {
    sid       = "Kubeconfig"
    actions   = ["eks:DescribeCluster"]
    resources = ["arn:${data.aws_partition.current.partition}:eks:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:cluster/${var.cluster_name}"]
  }
}

data "aws_iam_policy_document" "pull" {
  count = length(var.pull_repository_arns) > 0 ? 1 : 0
  statement {
    sid       = "PullFromSourceRegistry"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:DescribeImages"]
    resources = var.pull_repository_arns
  }
}

resource "aws_iam_role_policy" "pull" {
  count  = length(var.pull_repository_arns) > 0 ? 1 : 0
  name   = "pull-source-registry"
  role   = aws_iam_role.deploy.id
  policy = data.aws_iam_policy_document.pull[0].json
}

resource "aws_iam_role_policy" "deploy" {
  name   = "deploy"
  role   = aws_iam_role.deploy.id
  policy = data.aws_iam_policy_document.deploy.json
}
