output "mlflow_artifacts_bucket" {
  description = "Bucket of MLflow's artifacts (mlflow server --artifacts-destination s3://<bucket>/)."
  value       = module.mlflow_artifacts.id
}

output "mlflow_artifacts_bucket_arn" {
  description = "ARN of the MLflow artifacts bucket (IRSA policies)."
  value       = module.mlflow_artifacts.arn
}

output "dvc_remote_bucket" {
  description = "Bucket of the DVC remote (dvc remote add -d s3 s3://<bucket>/dvc)."
  value       = module.dvc_remote.id
}

output "dvc_remote_bucket_arn" {
  description = "ARN of the DVC remote bucket (IRSA policies)."
  value       = module.dvc_remote.arn
}

output "access_logs_bucket" {
  description = "Bucket receiving the data buckets' server access logs."
  value       = aws_s3_bucket.logs.id
}
