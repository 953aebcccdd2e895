# Two data buckets (MLflow artifacts: model bundles and run files; the DVC remote: raw data and pipeline outputs)
# plus one bucket receiving their server access logs. All three: versioned, SSE-KMS (the access-log bucket SSE-S3,
# which S3 log delivery requires), public access blocked, TLS only, owner-enforced (no ACLs).
data "aws_caller_identity" "current" {}

locals {
  suffix = data.aws_caller_identity.current.account_id
  data_buckets = {
    mlflow = "${var.name}-mlflow-artifacts-${local.suffix}"
    dvc    = "${var.name}-dvc-remote-${local.suffix}"
  }
}

# -- access logs -------------------------------------------------------------------------------------------------
resource "aws_s3_bucket" "logs" {
  #checkov:skip=CKV_AWS_18:This is the access-log target; logging it to itself would loop.
  #checkov:skip=CKV_AWS_144:Access logs are not replicated cross-region; they are audit copies kept in-region.
  #checkov:skip=CKV2_AWS_62:No consumer of object-created events for log files.
  #checkov:skip=CKV_AWS_145:S3 server access log delivery supports only SSE-S3 on the target bucket, not SSE-KMS.
  bucket        = "${var.name}-s3-access-logs-${local.suffix}"
  force_destroy = var.force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket_ownership_controls" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "logs" {
  bucket                  = aws_s3_bucket.logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "logs" {
  bucket = aws_s3_bucket.logs.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id
  # SSE-S3: server access log delivery does not support SSE-KMS on the target bucket.
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    id     = "expire-access-logs"
    status = "Enabled"
    filter {}
    expiration {
      days = var.access_log_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

data "aws_iam_policy_document" "logs" {
  statement {
    sid       = "S3ServerAccessLogsDelivery"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.logs.arn}/*"]
    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.suffix]
    }
  }
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.logs.arn, "${aws_s3_bucket.logs.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "logs" {
  bucket = aws_s3_bucket.logs.id
  policy = data.aws_iam_policy_document.logs.json
}

# -- data buckets ------------------------------------------------------------------------------------------------
module "mlflow_artifacts" {
  source                  = "../s3-bucket"
  bucket                  = local.data_buckets.mlflow
  kms_key_arn             = var.kms_key_arn
  log_bucket              = aws_s3_bucket.logs.id
  log_prefix              = "mlflow/"
  noncurrent_version_days = var.noncurrent_version_days
  force_destroy           = var.force_destroy
  tags                    = merge(var.tags, { Purpose = "mlflow-artifacts" })
}

module "dvc_remote" {
  source                  = "../s3-bucket"
  bucket                  = local.data_buckets.dvc
  kms_key_arn             = var.kms_key_arn
  log_bucket              = aws_s3_bucket.logs.id
  log_prefix              = "dvc/"
  noncurrent_version_days = var.noncurrent_version_days
  force_destroy           = var.force_destroy
  tags                    = merge(var.tags, { Purpose = "dvc-remote" })
}
