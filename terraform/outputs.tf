output "gateway_url" {
  description = "The gateway's OpenAI-compatible API on the box (base_url is this + /v1)."
  value       = local.gateway_url
}

output "gateway_public_url" {
  description = "The gateway's public URL through Tailscale Funnel, when given."
  value       = var.gateway_public_url
}

output "namespace" {
  description = "Nomad namespace of the jobs; set it as nomad.namespace in gateway.hcl."
  value       = nomad_namespace.llm.name
}

output "redis_url" {
  description = "Redis URL of the switchboard (gateway.hcl's redis.url)."
  value       = local.redis_url
}

output "orchestrator_nomad_token" {
  description = "Secret of the orchestrator's Nomad ACL token (NOMAD_TOKEN), for running it outside Nomad."
  value       = nomad_acl_token.orchestrator.secret_id
  sensitive   = true
}

output "orchestrator_consul_token" {
  description = "Secret of the orchestrator's Consul ACL token (CONSUL_HTTP_TOKEN)."
  value       = data.consul_acl_token_secret_id.orchestrator.secret_id
  sensitive   = true
}
