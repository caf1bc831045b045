package configs_test

import (
	"io/fs"
	"slices"
	"testing"

	"github.com/llm-switchboard/llm-switchboard/configs"
)

func TestDev_Files(t *testing.T) {
	got, err := fs.Glob(configs.Dev, "dev/*.hcl")
	if err != nil {
		t.Fatalf("glob: %v", err)
	}
	want := []string{"dev/gateway.hcl", "dev/models.hcl"}
	if !slices.Equal(got, want) {
		t.Fatalf("embedded files = %v, want %v", got, want)
	}
}
