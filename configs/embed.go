// Package configs carries the example configurations. The HCL files in this
// directory document every setting; the dev configuration is also embedded
// into the binary, so `switchboard dev` runs from any directory without a
// checkout.
package configs

import "embed"

// Dev holds dev/gateway.hcl and dev/models.hcl, the configuration of
// `switchboard dev`. Load it with config.Load("dev/gateway.hcl",
// config.LoadOptions{ReadFile: configs.Dev.ReadFile}).
//
//go:embed dev/*.hcl
var Dev embed.FS
