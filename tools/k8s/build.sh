#!/usr/bin/env bash
# Builds the real-Kubernetes test tools from pinned Go modules into one folder:
#   kube-apiserver, kube-controller-manager, kube-scheduler  (kube/: k8s.io/kubernetes)
#   etcd                                                     (etcd/: go.etcd.io/etcd/server/v3)
#   helm                                                     (helm/: helm.sh/helm/v3)
# Usage: tools/k8s/build.sh OUT_DIR [tool...]   (default: all five)
# Each module is its own go.mod so that their dependency graphs (grpc, otel,
# k8s.io/* of different minors for helm) never have to agree. Test tools
# only: the product stays one Rust binary.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: tools/k8s/build.sh OUT_DIR [tool...]}"
shift
tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=(etcd kube-apiserver kube-controller-manager kube-scheduler helm)
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# The version each binary reports (kubectl and helm read the API server's).
# A module's required version, from `require M v` or a line of a require block.
required() { awk -v m="$1" '$1 == "require" { $1 = ""; $0 = $0 } $1 == m { print $2; exit }' "$here/$2/go.mod"; }
kube_version=$(required k8s.io/kubernetes kube)
kube_minor=$(echo "$kube_version" | cut -d. -f2)
etcd_version=$(required go.etcd.io/etcd/server/v3 etcd)
helm_version=$(required helm.sh/helm/v3 helm)
for v in kube_version etcd_version helm_version; do
  [ -n "${!v}" ] || { echo "build.sh: no $v in tools/k8s/*/go.mod" >&2; exit 1; }
done

build() { # module dir, package, binary name, ldflags
  local start=$SECONDS
  (cd "$here/$1" && go build -trimpath -buildvcs=false -o "$out/$3.tmp" -ldflags "-s -w $4" "$2")
  mv "$out/$3.tmp" "$out/$3"
  echo "built $3 in $((SECONDS - start))s"
}

for tool in "${tools[@]}"; do
  case "$tool" in
    kube-apiserver|kube-controller-manager|kube-scheduler)
      build kube "k8s.io/kubernetes/cmd/$tool" "$tool" \
        "-X k8s.io/component-base/version.gitVersion=$kube_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$kube_minor -X k8s.io/component-base/version.gitTreeState=clean" ;;
    etcd)
      build etcd . etcd "-X go.etcd.io/etcd/api/v3/version.GitSHA=$etcd_version" ;;
    helm)
      build helm helm.sh/helm/v3/cmd/helm helm "-X helm.sh/helm/v3/internal/version.version=$helm_version -X helm.sh/helm/v3/internal/version.gitTreeState=clean" ;;
    *) echo "build.sh: unknown tool '$tool' (known: etcd kube-apiserver kube-controller-manager kube-scheduler helm)" >&2; exit 2 ;;
  esac
done
