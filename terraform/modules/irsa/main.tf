# IAM roles for service accounts: each Kubernetes service account assumes exactly one role, through the cluster's
# OIDC provider, and the trust pins both the namespace/name (sub) and the audience (aud). Least privilege: the
# serving pods only read the artifacts, only the pipeline writes the DVC remote.
data "aws_partition" "current" {}

locals {
  artifacts = var.mlflow_artifacts_bucket_arn
  dvc       = var.dvc_remote_bucket_arn

  s3_read = ["s3:GetObject", "s3:GetObjectVersion"]
  s3_rw   = ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]

  # who may assume each role: the roles' service accounts, and the EBS CSI driver's controller
  trusted = merge({ for name, role in local.roles : name => role.subjects },
  { "ebs-csi" = ["system:serviceaccount:kube-system:ebs-csi-controller-sa"] })

  roles = {
    recommender = {
      subjects = ["system:serviceaccount:${var.namespace}:recommender"]
      statements = [
        { sid = "ListArtifacts", actions = ["s3:ListBucket"], resources = [local.artifacts] },
        { sid = "ReadModelBundles", actions = local.s3_read, resources = ["${local.artifacts}/*"] },
      ]
    }
    mlflow = {
      subjects = ["system:serviceaccount:${var.namespace}:mlflow"]
      statements = [
        { sid = "ListArtifacts", actions = ["s3:ListBucket"], resources = [local.artifacts] },
        { sid = "ProxyArtifacts", actions = local.s3_rw, resources = ["${local.artifacts}/*"] },
      ]
    }
    pipeline = {
      subjects = ["system:serviceaccount:${var.namespace}:recsys-pipeline"]
      statements = [
        { sid = "ListBuckets", actions = ["s3:ListBucket"], resources = [local.artifacts, local.dvc] },
        { sid = "ReadWriteArtifactsAndDvc", actions = local.s3_rw, resources = ["${local.artifacts}/*", "${local.dvc}/*"] },
      ]
    }
    airflow = {
      subjects = [for sa in var.airflow_service_accounts : "system:serviceaccount:${var.airflow_namespace}:${sa}"]
      statements = [
        { sid = "ListLogs", actions = ["s3:ListBucket"], resources = [local.artifacts] },
        { sid = "RemoteTaskLogs", actions = local.s3_rw, resources = ["${local.artifacts}/airflow-logs/*"] },
      ]
    }
    external-secrets = {
      subjects = ["system:serviceaccount:${var.external_secrets_namespace}:${var.external_secrets_service_account}"]
      statements = [
        { sid = "ReadRecsysSecrets", actions = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"], resources = var.secret_arns },
      ]
    }
  }
}

data "aws_iam_policy_document" "trust" {
  for_each = local.trusted
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.oidc_provider}:aud"
      values   = ["sts.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.oidc_provider}:sub"
      values   = each.value
    }
  }
}

data "aws_iam_policy_document" "access" {
  for_each = local.roles

  dynamic "statement" {
    for_each = each.value.statements
    content {
      sid       = statement.value.sid
      actions   = statement.value.actions
      resources = statement.value.resources
    }
  }

  # Every bucket and secret is encrypted with the environment's key; decrypt (and, for writers, data keys) only
  # through the S3 / Secrets Manager service, not directly.
  statement {
    sid       = "UseEnvironmentKeyViaServices"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [var.kms_key_arn]
    condition {
      test     = "StringLike"
      variable = "kms:ViaService"
      values   = ["s3.*.amazonaws.com", "secretsmanager.*.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  for_each             = local.roles
  name                 = "${var.name}-${each.key}"
  description          = "IRSA role of ${join(", ", each.value.subjects)}"
  assume_role_policy   = data.aws_iam_policy_document.trust[each.key].json
  max_session_duration = 3600
  tags                 = var.tags
}

resource "aws_iam_role_policy" "this" {
  for_each = local.roles
  name     = "access"
  role     = aws_iam_role.this[each.key].id
  policy   = data.aws_iam_policy_document.access[each.key].json
}

# -- the EBS CSI driver (kube-system): trusted like the roles above, with an AWS-managed policy ---------------
resource "aws_iam_role" "ebs_csi" {
  name               = "${var.name}-ebs-csi"
  description        = "IRSA role of the EBS CSI driver controller"
  assume_role_policy = data.aws_iam_policy_document.trust["ebs-csi"].json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "ebs_csi" {
  role       = aws_iam_role.ebs_csi.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"
}

data "aws_iam_policy_document" "ebs_csi_kms" {
  # Volumes encrypted with the environment key: the driver creates grants for the EC2 service only.
  statement {
    sid       = "GrantsForEncryptedVolumes"
    actions   = ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"]
    resources = [var.kms_key_arn]
    condition {
      test     = "Bool"
      variable = "kms:GrantIsForAWSResource"
      values   = ["true"]
    }
  }
  statement {
    sid       = "EncryptVolumes"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "ebs_csi_kms" {
  name   = "kms"
  role   = aws_iam_role.ebs_csi.id
  policy = data.aws_iam_policy_document.ebs_csi_kms.json
}
