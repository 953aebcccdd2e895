terraform {
  # 1.10+: the S3 backend's native lockfile (use_lockfile) replaces the DynamoDB lock table.
  required_version = ">= 1.10"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.70, < 6.0"
    }
  }
}

provider "aws" {
  region = var.region

  # Every resource carries these; cost reports and IAM conditions can select on them.
  default_tags {
    tags = local.tags
  }
}
