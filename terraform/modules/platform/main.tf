# One environment's platform: the modules every environment wires the same way (KMS key, VPC, ECR, GitHub OIDC
# deploy role, EKS, S3, PostgreSQL, the recsys secret, IRSA roles). envs/<env> calls it once with that
# environment's sizes and protections; what differs between staging and production is a variable here.
locals {
  name = "recsys-${var.environment}"
  # Explicit AZ names (<region>a, <region>b, ...): the subnets never grow silently when a region gains an AZ.
  azs = [for letter in slice(["a", "b", "c"], 0, var.az_count) : "${var.region}${letter}"]
}

module "kms" {
  source                  = "../kms"
  name                    = local.name
  deletion_window_in_days = var.kms_deletion_window_days
  tags                    = var.tags
}

module "network" {
  source                  = "../network"
  name                    = local.name
  cidr                    = var.vpc_cidr
  azs                     = local.azs
  single_nat_gateway      = var.single_nat_gateway
  cluster_name            = local.name
  flow_log_retention_days = var.log_retention_days
  kms_key_arn             = module.kms.key_arn
  tags                    = var.tags
}

module "ecr" {
  source              = "../ecr"
  kms_key_arn         = module.kms.key_arn
  keep_images         = var.keep_images
  pull_principal_arns = var.ecr_pull_principal_arns
  tags                = var.tags
}

module "github_oidc" {
  source               = "../github-oidc"
  name                 = "${local.name}-github-deploy"
  create_oidc_provider = var.create_github_oidc_provider
  github_repository    = var.github_repository
  github_environments  = var.github_environments
  ecr_repository_arns  = values(module.ecr.repository_arns)
  pull_repository_arns = var.pull_repository_arns
  cluster_name         = local.name
  tags                 = var.tags
}

module "eks" {
  source                       = "../eks"
  cluster_name                 = local.name
  vpc_id                       = module.network.vpc_id
  subnet_ids                   = module.network.private_subnet_ids
  endpoint_public_access       = length(var.eks_public_access_cidrs) > 0
  endpoint_public_access_cidrs = var.eks_public_access_cidrs
  node_instance_types          = var.node_instance_types
  node_capacity_type           = var.node_capacity_type
  node_min_size                = var.node_min_size
  node_max_size                = var.node_max_size
  node_desired_size            = var.node_desired_size
  log_retention_days           = var.log_retention_days
  kms_key_arn                  = module.kms.key_arn
  deploy_role_arn              = module.github_oidc.role_arn
  admin_role_arns              = var.admin_role_arns
  ebs_csi_role_arn             = module.irsa.ebs_csi_role_arn
  tags                         = var.tags
}

module "storage" {
  source                  = "../storage"
  name                    = local.name
  kms_key_arn             = module.kms.key_arn
  noncurrent_version_days = var.noncurrent_version_days
  force_destroy           = var.force_destroy
  tags                    = var.tags
}

module "database" {
  source                     = "../database"
  identifier                 = local.name
  instance_class             = var.db_instance_class
  allocated_storage_gb       = var.db_allocated_storage_gb
  max_allocated_storage_gb   = var.db_max_allocated_storage_gb
  multi_az                   = var.db_multi_az
  deletion_protection        = var.db_deletion_protection
  backup_retention_days      = var.db_backup_retention_days
  skip_final_snapshot        = var.db_skip_final_snapshot
  vpc_id                     = module.network.vpc_id
  db_subnet_group_name       = module.network.database_subnet_group_name
  allowed_security_group_ids = [module.eks.node_security_group_id]
  kms_key_arn                = module.kms.key_arn
  tags                       = var.tags
}

module "secrets" {
  source                  = "../secrets"
  environment             = var.environment
  kms_key_arn             = module.kms.key_arn
  recovery_window_in_days = var.secret_recovery_window_days
  tags                    = var.tags
}

module "irsa" {
  source                      = "../irsa"
  name                        = local.name
  oidc_provider_arn           = module.eks.oidc_provider_arn
  oidc_provider               = module.eks.oidc_provider
  mlflow_artifacts_bucket_arn = module.storage.mlflow_artifacts_bucket_arn
  dvc_remote_bucket_arn       = module.storage.dvc_remote_bucket_arn
  secret_arns                 = [module.secrets.secret_arn, module.database.master_user_secret_arn]
  kms_key_arn                 = module.kms.key_arn
  tags                        = var.tags
}
