# One customer-managed key per environment encrypts the S3 buckets, the RDS storage and Performance Insights, the
# ECR repositories, Secrets Manager and the CloudWatch log groups: one key policy to audit, rotation on.
data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

data "aws_iam_policy_document" "key" {
  #checkov:skip=CKV_AWS_109:A key policy's Resource "*" means this key only; access is bounded by the account principal.
  #checkov:skip=CKV_AWS_111:A key policy's Resource "*" means this key only; writes are bounded by the account principal.
  #checkov:skip=CKV_AWS_356:A key policy's Resource "*" means this key only (the policy is attached to one key).
  statement {
    sid     = "AccountAdministersKeyThroughIAM"
    actions = ["kms:*"]
    # Delegates to IAM policies of this account (the AWS default key policy); no other account or anonymous principal.
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
    resources = ["*"]
  }

  statement {
    sid = "CloudWatchLogsEncryptsLogGroups"
    actions = [
      "kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey",
    ]
    principals {
      type        = "Service"
      identifiers = ["logs.${data.aws_region.current.name}.amazonaws.com"]
    }
    resources = ["*"]
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${data.aws_partition.current.partition}:logs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:*"]
    }
  }
}

data "aws_iam_policy_document" "autoscaling" {
  #checkov:skip=CKV_AWS_109:A key policy's Resource "*" means this key only.
  #checkov:skip=CKV_AWS_111:A key policy's Resource "*" means this key only.
  #checkov:skip=CKV_AWS_356:A key policy's Resource "*" means this key only.
  # The node group's Auto Scaling service-linked role launches instances with volumes encrypted by this key; without
  # these grants the nodes fail to start (Client.InvalidKMSKey.InvalidState).
  statement {
    sid       = "AutoScalingUsesKeyForNodeVolumes"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [local.autoscaling_role]
    }
  }
  statement {
    sid       = "AutoScalingCreatesGrantsForAWSResources"
    actions   = ["kms:CreateGrant"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [local.autoscaling_role]
    }
    condition {
      test     = "Bool"
      variable = "kms:GrantIsForAWSResource"
      values   = ["true"]
    }
  }
}

locals {
  autoscaling_role = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
}

data "aws_iam_policy_document" "combined" {
  source_policy_documents = [data.aws_iam_policy_document.key.json, data.aws_iam_policy_document.autoscaling.json]
}

resource "aws_kms_key" "this" {
  description             = "${var.name}: S3, RDS, ECR, Secrets Manager and log encryption"
  enable_key_rotation     = true
  deletion_window_in_days = var.deletion_window_in_days
  policy                  = data.aws_iam_policy_document.combined.json
  tags                    = var.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}
