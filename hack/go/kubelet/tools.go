//go:build tools

// Package tools pins the Kubernetes node commands this wrapper builds (hack/real-node.sh); the control
// plane's are in ../kubernetes, so building the real node never changes what the default toolchain builds.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
