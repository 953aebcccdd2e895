output "vpc_id" {
  description = "ID of the VPC."
  value       = module.vpc.vpc_id
}

output "vpc_cidr_block" {
  description = "CIDR of the VPC (the database security group admits it)."
  value       = module.vpc.vpc_cidr_block
}

output "private_subnet_ids" {
  description = "Private subnets (EKS nodes and control-plane ENIs)."
  value       = module.vpc.private_subnets
}

output "public_subnet_ids" {
  description = "Public subnets (NAT gateways, internet-facing load balancers)."
  value       = module.vpc.public_subnets
}

output "database_subnet_group_name" {
  description = "DB subnet group over the isolated database subnets."
  value       = module.vpc.database_subnet_group_name
}

output "azs" {
  description = "Availability zones in use."
  value       = local.azs
}
