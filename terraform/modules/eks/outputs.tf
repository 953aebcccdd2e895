output "cluster_name" {
  description = "Name of the EKS cluster (aws eks update-kubeconfig --name ...)."
  value       = module.eks.cluster_name
}

output "cluster_arn" {
  description = "ARN of the EKS cluster."
  value       = module.eks.cluster_arn
}

output "cluster_endpoint" {
  description = "API server endpoint."
  value       = module.eks.cluster_endpoint
}

output "cluster_certificate_authority_data" {
  description = "Base64 CA certificate of the API server."
  value       = module.eks.cluster_certificate_authority_data
}

output "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider (the IRSA trust)."
  value       = module.eks.oidc_provider_arn
}

output "oidc_provider" {
  description = "The OIDC issuer without https:// (the condition key prefix of IRSA trust policies)."
  value       = module.eks.oidc_provider
}

output "node_security_group_id" {
  description = "Security group of the nodes (the database admits it)."
  value       = module.eks.node_security_group_id
}
