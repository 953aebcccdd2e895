# Production: its own AWS account (the naming contract's ECR names repeat per account), three AZs, a NAT gateway
# per AZ, Multi-AZ PostgreSQL with deletion protection, 30-day backups and a final snapshot, on-demand nodes,
# buckets that refuse to be destroyed while they hold data.
locals {
  environment = "production"
  name        = "recsys-${local.environment}"
  tags = {
    Project     = "recsys"
    Environment = local.environment
    ManagedBy   = "terraform"
  }
}

module "kms" {
  source                  = "../../modules/kms"
  name                    = local.name
  deletion_window_in_days = 30
  tags                    = local.tags
}

module "network" {
  source                  = "../../modules/network"
  name                    = local.name
  cidr                    = "10.30.0.0/16"
  azs                     = ["${var.region}a", "${var.region}b", "${var.region}c"]
  single_nat_gateway      = false
  cluster_name            = local.name
  flow_log_retention_days = 365
  kms_key_arn             = module.kms.key_arn
  tags                    = local.tags
}

module "ecr" {
  source      = "../../modules/ecr"
  kms_key_arn = module.kms.key_arn
  keep_images = 50
  tags        = local.tags
}

module "github_oidc" {
  source               = "../../modules/github-oidc"
  name                 = "${local.name}-github-deploy"
  create_oidc_provider = var.create_github_oidc_provider
  github_repository    = var.github_repository
  # Only the CD workflow's promotion job, which runs in the GitHub environment "production" (required reviewers).
  github_environments = ["production"]
  ecr_repository_arns = values(module.ecr.repository_arns)
  # Promotion pulls the images staging tested from staging's registry (cd.yml, promote-production).
  pull_repository_arns = var.staging_ecr_repository_arns
  cluster_name         = local.name
  tags                 = local.tags
}

module "eks" {
  source                       = "../../modules/eks"
  cluster_name                 = local.name
  vpc_id                       = module.network.vpc_id
  subnet_ids                   = module.network.private_subnet_ids
  endpoint_public_access       = length(var.eks_public_access_cidrs) > 0
  endpoint_public_access_cidrs = var.eks_public_access_cidrs
  node_instance_types          = ["m6i.large", "m5.large", "m6a.large"]
  node_capacity_type           = "ON_DEMAND"
  node_min_size                = 3
  node_max_size                = 6
  node_desired_size            = 3
  log_retention_days           = 365
  kms_key_arn                  = module.kms.key_arn
  deploy_role_arn              = module.github_oidc.role_arn
  admin_role_arns              = var.admin_role_arns
  ebs_csi_role_arn             = module.irsa.ebs_csi_role_arn
  tags                         = local.tags
}

module "storage" {
  source                  = "../../modules/storage"
  name                    = local.name
  kms_key_arn             = module.kms.key_arn
  noncurrent_version_days = 90
  force_destroy           = false
  tags                    = local.tags
}

module "database" {
  source                     = "../../modules/database"
  identifier                 = local.name
  instance_class             = "db.m7g.large"
  allocated_storage_gb       = 50
  max_allocated_storage_gb   = 200
  multi_az                   = true
  deletion_protection        = true
  backup_retention_days      = 30
  skip_final_snapshot        = false
  vpc_id                     = module.network.vpc_id
  db_subnet_group_name       = module.network.database_subnet_group_name
  allowed_security_group_ids = [module.eks.node_security_group_id]
  kms_key_arn                = module.kms.key_arn
  tags                       = local.tags
}

module "secrets" {
  source                  = "../../modules/secrets"
  environment             = local.environment
  kms_key_arn             = module.kms.key_arn
  recovery_window_in_days = 30
  tags                    = local.tags
}

module "irsa" {
  source                      = "../../modules/irsa"
  name                        = local.name
  oidc_provider_arn           = module.eks.oidc_provider_arn
  oidc_provider               = module.eks.oidc_provider
  mlflow_artifacts_bucket_arn = module.storage.mlflow_artifacts_bucket_arn
  dvc_remote_bucket_arn       = module.storage.dvc_remote_bucket_arn
  secret_arns                 = [module.secrets.secret_arn, module.database.master_user_secret_arn]
  kms_key_arn                 = module.kms.key_arn
  tags                        = local.tags
}
