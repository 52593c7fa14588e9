#!/usr/bin/env bash
# Patch a copy of sigs.k8s.io/kube-network-policies (argument: its directory) for this kernel:
# it has no CONFIG_NFT_QUEUE, so nft's native `queue` expression fails with ENOENT
# ("Could not process rule: No such file or directory"), but it has nft_compat and the xt
# NFQUEUE target (CONFIG_NFT_COMPAT, CONFIG_NETFILTER_XT_TARGET_NFQUEUE). Every
# &expr.Queue{...} becomes xtQueue(num, bypass): the same verdict through nft_compat
# (nft lists it as "queue num N bypass"). Called by infra/tools/build-cluster.sh.
# And cmd/main.go takes its API config from $KUBECONFIG when set (upstream: in-cluster only), so it
# runs as a host process with its own client certificate.
set -euo pipefail
main=$1/cmd/main.go
perl -pi -e 's|"k8s.io/client-go/rest"|"k8s.io/client-go/tools/clientcmd"|; s|config, err := rest\.InClusterConfig\(\)|config, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))|' "$main"
grep -q 'clientcmd.BuildConfigFromFlags' "$main" || { echo "knp.sh: main.go patch did not apply" >&2; exit 1; }
src=$1/pkg/networkpolicy
perl -0pi -e 's/queue := &expr\.Queue\{Num: uint16\(c\.config\.QueueID\)\}\n\tif c\.config\.FailOpen \{\n\t\tqueue\.Flag = expr\.QueueFlagBypass\n\t\}/queue := xtQueue(uint16(c.config.QueueID), c.config.FailOpen)/g' "$src/controller.go"
perl -pi -e 's/&expr\.Queue\{Num: uint16\(n\.nfQueueID\), Flag: expr\.QueueFlagBypass\}/xtQueue(uint16(n.nfQueueID), true)/' "$src/dnsagent.go"
if grep -n 'expr\.Queue' "$src/controller.go" "$src/dnsagent.go"; then echo "knp.sh: expr.Queue left unpatched" >&2; exit 1; fi
[[ $(grep -c 'xtQueue(' "$src/controller.go") == 2 && $(grep -c 'xtQueue(' "$src/dnsagent.go") == 1 ]] || { echo "knp.sh: patch did not apply" >&2; exit 1; }
cat > "$src/xtqueue_akson.go" <<'GO'
package networkpolicy

import (
	"encoding/binary"

	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
)

// xtQueue is "queue num <num> [bypass]" as the xt NFQUEUE target (revision 3) through nft_compat,
// for kernels without nft_queue. Info is struct xt_NFQ_info_v3 {queuenum, queues_total, flags}.
func xtQueue(num uint16, bypass bool) *expr.Target {
	info := make(xt.Unknown, 6)
	binary.NativeEndian.PutUint16(info[0:], num)
	binary.NativeEndian.PutUint16(info[2:], 1)
	if bypass {
		binary.NativeEndian.PutUint16(info[4:], 1) // NFQ_FLAG_BYPASS
	}
	return &expr.Target{Name: "NFQUEUE", Rev: 3, Info: &info}
}
GO
