# Staging: the same modules as production, smaller and cheaper (one NAT gateway, single-AZ database without
# deletion protection, spot nodes), and destroyable (force_destroy buckets, no final snapshot, no secret recovery
# window).
locals {
  environment = "staging"
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
  deletion_window_in_days = 7
  tags                    = local.tags
}

module "network" {
  source                  = "../../modules/network"
  name                    = local.name
  cidr                    = "10.20.0.0/16"
  azs                     = ["${var.region}a", "${var.region}b"]
  single_nat_gateway      = true
  cluster_name            = local.name
  flow_log_retention_days = 30
  kms_key_arn             = module.kms.key_arn
  tags                    = local.tags
}

module "ecr" {
  source      = "../../modules/ecr"
  kms_key_arn = module.kms.key_arn
  keep_images = 20
  # Production promotes by copying these images (cd.yml): its deploy role may pull.
  pull_principal_arns = compact([var.production_deploy_role_arn])
  tags                = local.tags
}

module "github_oidc" {
  source               = "../../modules/github-oidc"
  name                 = "${local.name}-github-deploy"
  create_oidc_provider = var.create_github_oidc_provider
  github_repository    = var.github_repository
  # The CD workflow's build and staging jobs run in the GitHub environment "staging".
  github_environments = ["staging"]
  ecr_repository_arns = values(module.ecr.repository_arns)
  cluster_name        = local.name
  tags                = local.tags
}

module "eks" {
  source                       = "../../modules/eks"
  cluster_name                 = local.name
  vpc_id                       = module.network.vpc_id
  subnet_ids                   = module.network.private_subnet_ids
  endpoint_public_access       = length(var.eks_public_access_cidrs) > 0
  endpoint_public_access_cidrs = var.eks_public_access_cidrs
  node_instance_types          = ["m6i.large", "m5.large", "m6a.large"]
  node_capacity_type           = "SPOT"
  node_min_size                = 2
  node_max_size                = 3
  node_desired_size            = 2
  log_retention_days           = 30
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
  noncurrent_version_days = 14
  force_destroy           = true
  tags                    = local.tags
}

module "database" {
  source                     = "../../modules/database"
  identifier                 = local.name
  instance_class             = "db.t4g.medium"
  allocated_storage_gb       = 20
  max_allocated_storage_gb   = 50
  multi_az                   = false
  deletion_protection        = false
  backup_retention_days      = 7
  skip_final_snapshot        = true
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
  recovery_window_in_days = 0
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
