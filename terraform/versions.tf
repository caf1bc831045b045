terraform {
  required_version = ">= 1.5.0"

  required_providers {
    nomad = {
      source  = "hashicorp/nomad"
      version = "~> 2.4"
    }
    consul = {
      source  = "hashicorp/consul"
      version = "~> 2.21"
    }
  }
}

# The operator's own tokens (management or equivalent) come from
# var.nomad_token / var.consul_token, or, when those are null, from
# NOMAD_TOKEN and CONSUL_HTTP_TOKEN as for the CLIs.
provider "nomad" {
  address   = var.nomad_address
  region    = var.nomad_region
  secret_id = var.nomad_token
}

provider "consul" {
  address    = var.consul_address
  scheme     = var.consul_scheme
  datacenter = var.datacenter
  token      = var.consul_token
}
