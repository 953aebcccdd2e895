# Remote state: a partial S3 backend configuration. The bucket, key and region come from backend.hcl at init time
# (terraform init -backend-config=backend.hcl), so the same code serves any account; see backend.hcl.example and
# docs/infrastructure.md ("Remote state") for bootstrapping the state bucket. Offline checks run
# `terraform init -backend=false`, which ignores this block.
terraform {
  backend "s3" {
    encrypt      = true
    use_lockfile = true
  }
}
