# Staging: the platform of production, smaller and cheaper (one NAT gateway, single-AZ database without deletion
# protection, spot nodes), and destroyable (force_destroy buckets, no final snapshot, no secret recovery window).
locals {
  environment = "staging"
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

  vpc_cidr           = "10.20.0.0/16" # production is 10.30.0.0/16: the VPCs never overlap
  az_count           = 2
  single_nat_gateway = true # one NAT gateway: cheaper, egress depends on one AZ
  log_retention_days = 30   # VPC flow logs and EKS control-plane logs

  kms_deletion_window_days    = 7 # the shortest KMS allows
  secret_recovery_window_days = 0 # 0 deletes at once, so a destroy/apply cycle can recreate the secret's name

  keep_images = 20
  # Production promotes by copying these images (cd.yml): its deploy role may pull.
  ecr_pull_principal_arns = compact([var.production_deploy_role_arn])
  # The CD workflow's build and staging jobs run in the GitHub environment "staging".
  github_environments = ["staging"]

  github_repository           = var.github_repository
  create_github_oidc_provider = var.create_github_oidc_provider

  eks_public_access_cidrs = var.eks_public_access_cidrs
  admin_role_arns         = var.admin_role_arns
  node_capacity_type      = "SPOT" # interruptible, a fraction of the on-demand price
  node_min_size           = 2
  node_max_size           = 3
  node_desired_size       = 2

  noncurrent_version_days = 14
  force_destroy           = true # terraform destroy may delete non-empty buckets

  db_instance_class           = "db.t4g.medium"
  db_allocated_storage_gb     = 20
  db_max_allocated_storage_gb = 50
  db_multi_az                 = false
  db_deletion_protection      = false
  db_backup_retention_days    = 7
  db_skip_final_snapshot      = true
}
