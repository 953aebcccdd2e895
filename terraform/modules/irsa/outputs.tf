output "role_arns" {
  description = "IRSA role ARNs by workload (recommender, mlflow, pipeline, airflow, external-secrets): the eks.amazonaws.com/role-arn annotations."
  value       = { for k, r in aws_iam_role.this : k => r.arn }
}

output "ebs_csi_role_arn" {
  description = "IRSA role ARN of the EBS CSI driver add-on."
  value       = aws_iam_role.ebs_csi.arn
}
