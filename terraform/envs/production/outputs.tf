output "region" {
  description = "AWS region (aws eks update-kubeconfig --region)."
  value       = module.platform.region
}

output "cluster_name" {
  description = "EKS cluster: aws eks update-kubeconfig --name <this> --region <region>."
  value       = module.platform.cluster_name
}

output "cluster_endpoint" {
  description = "EKS API server endpoint."
  value       = module.platform.cluster_endpoint
}

output "ecr_repository_urls" {
  description = "ECR repository URLs by image name (the CD workflow's push targets, the kustomize images: newName)."
  value       = module.platform.ecr_repository_urls
}

output "ecr_repository_arns" {
  description = "ECR repository ARNs by image name (production's staging_ecr_repository_arns)."
  value       = module.platform.ecr_repository_arns
}

output "mlflow_artifacts_bucket" {
  description = "MLflow --artifacts-destination s3://<this>/."
  value       = module.platform.mlflow_artifacts_bucket
}

output "dvc_remote_bucket" {
  description = "DVC remote: dvc remote add -d s3 s3://<this>/dvc."
  value       = module.platform.dvc_remote_bucket
}

output "db_address" {
  description = "PostgreSQL host of the airflow, mlflow and recsys databases."
  value       = module.platform.db_address
}

output "db_port" {
  description = "PostgreSQL port."
  value       = module.platform.db_port
}

output "db_master_secret_arn" {
  description = "RDS-managed secret holding the master password (the database bootstrap reads it once)."
  value       = module.platform.db_master_secret_arn
}

output "recsys_secret_name" {
  description = "Secrets Manager name behind the Kubernetes Secret recsys-secrets (ExternalSecret remoteRef key)."
  value       = module.platform.recsys_secret_name
}

output "irsa_role_arns" {
  description = "eks.amazonaws.com/role-arn annotation of each service account (recommender, mlflow, pipeline -> recsys-pipeline, airflow, external-secrets)."
  value       = module.platform.irsa_role_arns
}

output "github_deploy_role_arn" {
  description = "The AWS_DEPLOY_ROLE_ARN variable of the GitHub environment(s) of this account."
  value       = module.platform.github_deploy_role_arn
}
