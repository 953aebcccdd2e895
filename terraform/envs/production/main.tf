# Production: its own AWS account (the naming contract's ECR names repeat per account), three AZs, a NAT gateway
# per AZ, Multi-AZ PostgreSQL with deletion protection, 30-day backups and a final snapshot, on-demand nodes,
# buckets that refuse to be destroyed while they hold data.
locals {
  environment = "production"
  tags = {
    Project     = "recsys"
    Environment = local.environment
    ManagedBy   = "terraform"
  }
}

module "platform" {
  source      = "../../modules/platform"
  environment = local.environment
  region      = var.region
  tags        = local.tags

  vpc_cidr           = "10.30.0.0/16" # staging is 10.20.0.0/16: the VPCs never overlap
  az_count           = 3
  single_nat_gateway = false # a NAT gateway per AZ: one AZ's outage does not cut the others' egress
  log_retention_days = 365   # VPC flow logs and EKS control-plane logs: a year of audit trail

  kms_deletion_window_days    = 30 # the longest KMS allows: time to cancel a mistaken destroy
  secret_recovery_window_days = 30

  keep_images = 50 # rollback reaches further back than in staging
  # Only the CD workflow's promotion job, which runs in the GitHub environment "production" (required reviewers).
  github_environments = ["production"]
  # Promotion pulls the images staging tested from staging's registry (cd.yml, promote-production).
  pull_repository_arns        = var.staging_ecr_repository_arns
  github_repository           = var.github_repository
  create_github_oidc_provider = var.create_github_oidc_provider

  eks_public_access_cidrs = var.eks_public_access_cidrs
  admin_role_arns         = var.admin_role_arns
  node_capacity_type      = "ON_DEMAND"
  node_min_size           = 3
  node_max_size           = 6
  node_desired_size       = 3

  noncurrent_version_days = 90
  force_destroy           = false # buckets holding model artifacts refuse to be destroyed

  db_instance_class           = "db.m7g.large"
  db_allocated_storage_gb     = 50
  db_max_allocated_storage_gb = 200
  db_multi_az                 = true
  db_deletion_protection      = true
  db_backup_retention_days    = 30
  db_skip_final_snapshot      = false # a final snapshot before any deletion
}
