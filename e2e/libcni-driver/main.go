// eni-libcni drives libcni, the library containerd's CRI plugin uses, for the CNI
// operations containerd 2.4 itself never calls (CHECK, GC) and for STATUS, with the
// runtime's own data: the conflist containerd loaded, the result cache containerd wrote
// on ADD, and the container IDs of the sandboxes containerd still has. The end-to-end
// trials on real nodes use it; it is a test tool, not part of the product.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

type validList []string

func (v *validList) String() string     { return strings.Join(*v, ",") }
func (v *validList) Set(s string) error { *v = append(*v, s); return nil }

func main() {
	if len(os.Args) < 2 {
		fail(fmt.Errorf("usage: eni-libcni check|gc|status [flags]"))
	}
	cmd := os.Args[1]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	confDir := fs.String("conf-dir", "/etc/cni/net.d", "directory of the conflist the runtime loads")
	binDir := fs.String("bin-dir", "/opt/cni/bin", "CNI plugin binaries")
	cacheDir := fs.String("cache-dir", "/var/lib/cni", "libcni's result cache (containerd's default)")
	containerID := fs.String("container-id", "", "sandbox ID the runtime attached (check)")
	netns := fs.String("netns", "", "the sandbox's network namespace path (check)")
	ifName := fs.String("ifname", "eth0", "interface name inside the sandbox")
	var valid validList
	fs.Var(&valid, "valid", "a sandbox ID that is still valid (gc; repeat)")
	if err := fs.Parse(os.Args[2:]); err != nil {
		fail(err)
	}
	list, err := loadConflist(*confDir)
	if err != nil {
		fail(err)
	}
	cni := libcni.NewCNIConfigWithCacheDir([]string{*binDir}, *cacheDir, nil)
	ctx := context.Background()
	switch cmd {
	case "check":
		if *containerID == "" || *netns == "" {
			fail(fmt.Errorf("check needs --container-id and --netns"))
		}
		rt := &libcni.RuntimeConf{ContainerID: *containerID, NetNS: *netns, IfName: *ifName}
		// The arguments the runtime gave on ADD (pod name, namespace, UID), from its cache.
		_, cached, err := cni.GetNetworkListCachedConfig(list, rt)
		if err != nil {
			fail(fmt.Errorf("reading the runtime's cached ADD of %s: %w", *containerID, err))
		}
		if cached == nil {
			fail(fmt.Errorf("no cached ADD for %s/%s in %s", *containerID, *ifName, *cacheDir))
		}
		cached.NetNS = *netns
		fail(cni.CheckNetworkList(ctx, list, cached))
	case "gc":
		attachments := make([]types.GCAttachment, 0, len(valid))
		for _, id := range valid {
			attachments = append(attachments, types.GCAttachment{ContainerID: id, IfName: *ifName})
		}
		fail(cni.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: attachments}))
	case "status":
		fail(cni.GetStatusNetworkList(ctx, list))
	case "cached":
		// The container IDs libcni holds results for, as JSON: what GC would consider.
		ids, err := cachedIDs(*cacheDir, list.Name)
		if err != nil {
			fail(err)
		}
		out, _ := json.Marshal(ids)
		fmt.Println(string(out))
	default:
		fail(fmt.Errorf("unknown command %q (check, gc, status, cached)", cmd))
	}
}

// loadConflist picks the conflist the runtime uses: the first in lexical order, as
// containerd does with max_conf_num = 1.
func loadConflist(dir string) (*libcni.NetworkConfigList, error) {
	files, err := libcni.ConfFiles(dir, []string{".conflist"})
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no .conflist in %s", dir)
	}
	sort.Strings(files)
	return libcni.ConfListFromFile(files[0])
}

// cachedIDs lists the container IDs with a cached result of network `name`
// (files `<name>-<id>-<ifname>` under results/).
func cachedIDs(cacheDir, name string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(cacheDir, "results"))
	if err != nil {
		return nil, err
	}
	ids := []string{}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), name+"-")
		if !ok {
			continue
		}
		if i := strings.LastIndex(rest, "-"); i > 0 {
			ids = append(ids, rest[:i])
		}
	}
	return ids, nil
}

func fail(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}
