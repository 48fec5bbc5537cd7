//go:build tools

// Package tools keeps the provider's dependencies in go.sum; the command itself is assembled by
// hack/toolchain.sh.
package tools

import (
	_ "github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	_ "github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
	_ "github.com/pulumi/pulumi/pkg/v3/codegen/schema"
)
