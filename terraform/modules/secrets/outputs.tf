output "secret_arn" {
  description = "ARN of the recsys-secrets secret (External Secrets' SecretStore reads it through IRSA)."
  value       = aws_secretsmanager_secret.this.arn
}

output "secret_name" {
  description = "Name of the secret (the remoteRef key of the ExternalSecret)."
  value       = aws_secretsmanager_secret.this.name
}
