# The VPC: private subnets for the EKS nodes, public subnets only for NAT gateways and load balancers, isolated
# database subnets (no route to the internet) for RDS. Flow logs record all traffic.
# The zones are named explicitly (not "the first N available"): a zone AWS adds later must not silently move
# subnets, and each environment states where its data lives.
locals {
  azs      = var.azs
  az_count = length(var.azs)
}

module "vpc" {
  #checkov:skip=CKV_TF_1:A Terraform Registry module pinned by version; registry versions are immutable and .terraform.lock.hcl pins the providers. Pin a git commit instead if your policy demands it.
  source  = "terraform-aws-modules/vpc/aws"
  version = "~> 5.21"

  name = var.name
  cidr = var.cidr
  azs  = local.azs

  # /20 private subnets (4,091 addresses each: the VPC CNI gives every pod a VPC address), /24 public and database.
  private_subnets  = [for i in range(local.az_count) : cidrsubnet(var.cidr, 4, i)]
  public_subnets   = [for i in range(local.az_count) : cidrsubnet(var.cidr, 8, 48 + i)]
  database_subnets = [for i in range(local.az_count) : cidrsubnet(var.cidr, 8, 64 + i)]

  create_database_subnet_group           = true
  create_database_subnet_route_table     = true
  create_database_internet_gateway_route = false
  create_database_nat_gateway_route      = false

  enable_nat_gateway     = true
  single_nat_gateway     = var.single_nat_gateway
  one_nat_gateway_per_az = !var.single_nat_gateway

  enable_dns_hostnames = true
  enable_dns_support   = true

  # Nothing should use the default security group: the module strips its rules.
  manage_default_security_group  = true
  default_security_group_ingress = []
  default_security_group_egress  = []

  map_public_ip_on_launch = false

  enable_flow_log                                 = true
  create_flow_log_cloudwatch_log_group            = true
  create_flow_log_cloudwatch_iam_role             = true
  flow_log_max_aggregation_interval               = 60
  flow_log_cloudwatch_log_group_retention_in_days = var.flow_log_retention_days
  flow_log_cloudwatch_log_group_kms_key_id        = var.kms_key_arn

  public_subnet_tags = {
    "kubernetes.io/role/elb"                    = "1"
    "kubernetes.io/cluster/${var.cluster_name}" = "shared"
  }
  private_subnet_tags = {
    "kubernetes.io/role/internal-elb"           = "1"
    "kubernetes.io/cluster/${var.cluster_name}" = "shared"
  }

  tags = var.tags
}
