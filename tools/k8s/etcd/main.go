// Command etcd is the upstream etcd server, built from the
// go.etcd.io/etcd/server/v3 Go module for the real control plane the tests
// start (tools/k8s/build.sh). It is the same entry point as etcd's main.go.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
