# The modules moved into modules/platform: these keep the existing state's resources (no destroy and re-create).
moved {
  from = module.kms
  to   = module.platform.module.kms
}

moved {
  from = module.network
  to   = module.platform.module.network
}

moved {
  from = module.ecr
  to   = module.platform.module.ecr
}

moved {
  from = module.github_oidc
  to   = module.platform.module.github_oidc
}

moved {
  from = module.eks
  to   = module.platform.module.eks
}

moved {
  from = module.storage
  to   = module.platform.module.storage
}

moved {
  from = module.database
  to   = module.platform.module.database
}

moved {
  from = module.secrets
  to   = module.platform.module.secrets
}

moved {
  from = module.irsa
  to   = module.platform.module.irsa
}
