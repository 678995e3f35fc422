// ecs-sdk-check drives vpc-sim's ECS endpoint with Alibaba Cloud's official Go SDKs
// (ECS 2014-05-26, VPC 2016-04-28) through a whole ENI life cycle in every mode, and
// sends requests the endpoint must refuse. If the official SDK cannot talk to vpc-sim,
// vpc-sim is wrong. It prints one JSON line ({"checks":N,"failed":[...]}) and exits 1 on
// any failure.
//
// The endpoint must hold two registered instances: -trunk-instance of a type with trunk
// support and -plain-instance of one without; the caller (vpc-sim/tests/ecs_sdk.rs)
// registers them through the admin API.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"time"

	openapiutil "github.com/alibabacloud-go/darabonba-openapi/v2/utils"
	ecs "github.com/alibabacloud-go/ecs-20140526/v7/client"
	"github.com/alibabacloud-go/tea/dara"
	"github.com/alibabacloud-go/tea/tea"
	vpc "github.com/alibabacloud-go/vpc-20160428/v6/client"
)

var (
	endpoint      = flag.String("endpoint", "", "host:port of the ECS endpoint")
	region        = flag.String("region", "cn-hangzhou", "region id")
	accessKey     = flag.String("access-key", "vpcsim", "AccessKey id")
	secret        = flag.String("secret", "vpcsim-secret", "AccessKey secret")
	trunkInstance = flag.String("trunk-instance", "", "instance of a trunk-capable type")
	plainInstance = flag.String("plain-instance", "", "instance of a type without trunk support")
)

type report struct {
	Checks int      `json:"checks"`
	Failed []string `json:"failed"`
}

var rep = report{Failed: []string{}}

func check(ok bool, format string, args ...any) bool {
	rep.Checks++
	if !ok {
		rep.Failed = append(rep.Failed, fmt.Sprintf(format, args...))
	}
	return ok
}

// must stops the run: later steps depend on this one.
func must(err error, what string) {
	if err != nil {
		rep.Failed = append(rep.Failed, fmt.Sprintf("%s: %v", what, err))
		finish()
	}
}

func finish() {
	line, _ := json.Marshal(rep)
	fmt.Println(string(line))
	if len(rep.Failed) > 0 {
		os.Exit(1)
	}
	os.Exit(0)
}

func code(err error) string {
	// The SDK answers with the legacy tea error, newer darabonba ones carry GetCode.
	var sdk *tea.SDKError
	if errors.As(err, &sdk) {
		return dara.StringValue(sdk.Code)
	}
	var coded interface{ GetCode() *string }
	if errors.As(err, &coded) {
		return dara.StringValue(coded.GetCode())
	}
	if err != nil {
		return fmt.Sprintf("(no code: %T %v)", err, err)
	}
	return ""
}

func config(ak, sk string) *openapiutil.Config {
	return &openapiutil.Config{
		AccessKeyId:     dara.String(ak),
		AccessKeySecret: dara.String(sk),
		Endpoint:        dara.String(*endpoint),
		Protocol:        dara.String("http"),
		RegionId:        dara.String(*region),
	}
}

type eniView = ecs.DescribeNetworkInterfacesResponseBodyNetworkInterfaceSetsNetworkInterfaceSet

var client *ecs.Client

func describe(ids ...string) []*eniView {
	out, err := client.DescribeNetworkInterfaces(&ecs.DescribeNetworkInterfacesRequest{
		RegionId:           region,
		NetworkInterfaceId: dara.StringSlice(ids),
	})
	must(err, "DescribeNetworkInterfaces")
	return out.Body.NetworkInterfaceSets.NetworkInterfaceSet
}

func one(id string) *eniView {
	got := describe(id)
	if len(got) != 1 {
		must(fmt.Errorf("%d results", len(got)), "describe "+id)
	}
	return got[0]
}

// waitStatus polls until the ENI reaches status (attach and detach are asynchronous).
func waitStatus(id, status string) {
	for i := 0; i < 200; i++ {
		if dara.StringValue(one(id).Status) == status {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	must(fmt.Errorf("not %s after 10 s", status), "wait "+id)
}

func create(req *ecs.CreateNetworkInterfaceRequest) *ecs.CreateNetworkInterfaceResponseBody {
	req.RegionId = region
	out, err := client.CreateNetworkInterface(req)
	must(err, "CreateNetworkInterface")
	return out.Body
}

func tag(k, v string) *ecs.CreateNetworkInterfaceRequestTag {
	return &ecs.CreateNetworkInterfaceRequestTag{Key: dara.String(k), Value: dara.String(v)}
}

func groupsOf(e *eniView) []string {
	return dara.StringSliceValue(e.SecurityGroupIds.SecurityGroupId)
}

func main() {
	flag.Parse()
	var err error
	client, err = ecs.NewClient(config(*accessKey, *secret))
	must(err, "ecs client")
	vpcClient, err := vpc.NewClient(config(*accessKey, *secret))
	must(err, "vpc client")

	// vSwitches by tag, with their free address counts.
	vsw, err := vpcClient.DescribeVSwitches(&vpc.DescribeVSwitchesRequest{
		RegionId: region,
		Tag:      []*vpc.DescribeVSwitchesRequestTag{{Key: dara.String("eni-operator.io/pods"), Value: dara.String("true")}},
		PageSize: dara.Int32(50),
	})
	must(err, "DescribeVSwitches")
	switches := vsw.Body.VSwitches.VSwitch
	check(len(switches) == 2, "DescribeVSwitches by tag: %d vSwitches, want 2", len(switches))
	if len(switches) == 0 {
		finish()
	}

	// Instances, their zone and types.
	inst, err := client.DescribeInstances(&ecs.DescribeInstancesRequest{
		RegionId:    region,
		InstanceIds: dara.String(fmt.Sprintf(`["%s","%s"]`, *trunkInstance, *plainInstance)),
	})
	must(err, "DescribeInstances")
	instances := inst.Body.Instances.Instance
	if !check(len(instances) == 2, "DescribeInstances: %d instances, want 2", len(instances)) {
		finish()
	}
	zone := dara.StringValue(instances[0].ZoneId)
	var vswitch string
	free := map[string]int64{}
	for _, s := range switches {
		free[dara.StringValue(s.VSwitchId)] = dara.Int64Value(s.AvailableIpAddressCount)
		if dara.StringValue(s.ZoneId) == zone {
			vswitch = dara.StringValue(s.VSwitchId)
		}
	}
	if !check(vswitch != "", "no tagged vSwitch in zone %s", zone) {
		finish()
	}
	types := map[string]string{}
	for _, i := range instances {
		types[dara.StringValue(i.InstanceId)] = dara.StringValue(i.InstanceType)
	}
	it, err := client.DescribeInstanceTypes(&ecs.DescribeInstanceTypesRequest{
		InstanceTypes: dara.StringSlice([]string{types[*trunkInstance], types[*plainInstance]}),
	})
	must(err, "DescribeInstanceTypes")
	for _, t := range it.Body.InstanceTypes.InstanceType {
		name := dara.StringValue(t.InstanceTypeId)
		trunk := dara.BoolValue(t.EniTrunkSupported)
		members := dara.Int32Value(t.EniTotalQuantity) - dara.Int32Value(t.EniQuantity)
		check(dara.Int32Value(t.EniPrivateIpAddressQuantity) > 1, "%s: EniPrivateIpAddressQuantity", name)
		if name == types[*trunkInstance] {
			check(trunk && members > 0, "%s: trunking %v with %d members, want support", name, trunk, members)
		} else {
			check(!trunk, "%s: trunking reported for a type without it", name)
		}
	}

	// Security groups by JSON id list.
	sgs, err := client.DescribeSecurityGroups(&ecs.DescribeSecurityGroupsRequest{RegionId: region})
	must(err, "DescribeSecurityGroups")
	groups := map[string]string{}
	for _, g := range sgs.Body.SecurityGroups.SecurityGroup {
		groups[dara.StringValue(g.SecurityGroupName)] = dara.StringValue(g.SecurityGroupId)
	}
	byID, err := client.DescribeSecurityGroups(&ecs.DescribeSecurityGroupsRequest{
		RegionId:         region,
		SecurityGroupIds: dara.String(fmt.Sprintf(`["%s"]`, groups["web"])),
	})
	must(err, "DescribeSecurityGroups by id")
	check(len(byID.Body.SecurityGroups.SecurityGroup) == 1, "DescribeSecurityGroups by id: %d groups", len(byID.Body.SecurityGroups.SecurityGroup))

	// Secondary ENI with addresses; the same client token returns the same ENI.
	req := &ecs.CreateNetworkInterfaceRequest{
		VSwitchId:                      dara.String(vswitch),
		SecurityGroupIds:               dara.StringSlice([]string{groups["default"]}),
		InstanceType:                   dara.String("Secondary"),
		SecondaryPrivateIpAddressCount: dara.Int32(2),
		Tag:                            []*ecs.CreateNetworkInterfaceRequestTag{tag("sdk-check", "yes"), tag("kind", "ips")},
		ClientToken:                    dara.String("sdk-check-ips"),
	}
	ips := create(req)
	ipsID := dara.StringValue(ips.NetworkInterfaceId)
	check(len(ips.PrivateIpSets.PrivateIpSet) == 3, "create with 2 secondaries: %d addresses", len(ips.PrivateIpSets.PrivateIpSet))
	again := create(req)
	check(dara.StringValue(again.NetworkInterfaceId) == ipsID, "client token repeat made %s, want %s", dara.StringValue(again.NetworkInterfaceId), ipsID)
	_, err = client.AttachNetworkInterface(&ecs.AttachNetworkInterfaceRequest{
		RegionId: region, InstanceId: plainInstance, NetworkInterfaceId: dara.String(ipsID),
	})
	must(err, "AttachNetworkInterface")
	waitStatus(ipsID, "InUse")
	view := describeOne(ipsID)
	check(dara.StringValue(view.Type) == "Secondary", "attached ENI type %s", dara.StringValue(view.Type))
	check(dara.StringValue(view.InstanceId) == *plainInstance, "attached to %s", dara.StringValue(view.InstanceId))
	assigned, err := client.AssignPrivateIpAddresses(&ecs.AssignPrivateIpAddressesRequest{
		RegionId: region, NetworkInterfaceId: dara.String(ipsID), SecondaryPrivateIpAddressCount: dara.Int32(2),
	})
	must(err, "AssignPrivateIpAddresses")
	added := dara.StringSliceValue(assigned.Body.AssignedPrivateIpAddressesSet.PrivateIpSet.PrivateIpAddress)
	check(len(added) == 2, "assign 2: got %v", added)
	check(len(describeOne(ipsID).PrivateIpSets.PrivateIpSet) == 5, "after assign: want 5 addresses")
	if len(added) > 0 {
		unassign := &ecs.UnassignPrivateIpAddressesRequest{
			RegionId: region, NetworkInterfaceId: dara.String(ipsID), PrivateIpAddress: dara.StringSlice(added[:1]),
		}
		_, err = client.UnassignPrivateIpAddresses(unassign)
		must(err, "UnassignPrivateIpAddresses")
		_, err = client.UnassignPrivateIpAddresses(unassign)
		check(code(err) == "InvalidIp.IpUnassigned", "second unassign: code %q, want InvalidIp.IpUnassigned", code(err))
	}

	// Prefixes: at creation and assigned later.
	pfx := create(&ecs.CreateNetworkInterfaceRequest{
		VSwitchId:        dara.String(vswitch),
		SecurityGroupIds: dara.StringSlice([]string{groups["default"]}),
		Ipv4PrefixCount:  dara.Int32(1),
		Tag:              []*ecs.CreateNetworkInterfaceRequestTag{tag("sdk-check", "yes"), tag("kind", "prefix")},
		ClientToken:      dara.String("sdk-check-prefix"),
	})
	pfxID := dara.StringValue(pfx.NetworkInterfaceId)
	check(len(pfx.Ipv4PrefixSets.Ipv4PrefixSet) == 1, "create with a prefix: %d prefixes", len(pfx.Ipv4PrefixSets.Ipv4PrefixSet))
	ap, err := client.AssignPrivateIpAddresses(&ecs.AssignPrivateIpAddressesRequest{
		RegionId: region, NetworkInterfaceId: dara.String(pfxID), Ipv4PrefixCount: dara.Int32(1),
	})
	must(err, "AssignPrivateIpAddresses prefix")
	prefixes := dara.StringSliceValue(ap.Body.AssignedPrivateIpAddressesSet.Ipv4PrefixSet.Ipv4Prefixes)
	check(len(prefixes) == 1, "assign a prefix: got %v", prefixes)
	_, err = client.UnassignPrivateIpAddresses(&ecs.UnassignPrivateIpAddressesRequest{
		RegionId: region, NetworkInterfaceId: dara.String(pfxID), Ipv4Prefix: dara.StringSlice(prefixes),
	})
	must(err, "UnassignPrivateIpAddresses prefix")
	check(len(describeOne(pfxID).Ipv4PrefixSets.Ipv4PrefixSet) == 1, "after unassign: want 1 prefix")

	// Security group change.
	_, err = client.ModifyNetworkInterfaceAttribute(&ecs.ModifyNetworkInterfaceAttributeRequest{
		RegionId: region, NetworkInterfaceId: dara.String(ipsID), SecurityGroupId: dara.StringSlice([]string{groups["web"]}),
	})
	must(err, "ModifyNetworkInterfaceAttribute")
	got := groupsOf(describeOne(ipsID))
	check(len(got) == 1 && got[0] == groups["web"], "groups after modify: %v", got)

	// Trunk and members: a member's device index on the trunk is its VLAN id.
	trunk := create(&ecs.CreateNetworkInterfaceRequest{
		VSwitchId:        dara.String(vswitch),
		SecurityGroupIds: dara.StringSlice([]string{groups["default"]}),
		InstanceType:     dara.String("Trunk"),
		Tag:              []*ecs.CreateNetworkInterfaceRequestTag{tag("sdk-check", "yes"), tag("kind", "trunk")},
	})
	trunkID := dara.StringValue(trunk.NetworkInterfaceId)
	_, err = client.AttachNetworkInterface(&ecs.AttachNetworkInterfaceRequest{
		RegionId: region, InstanceId: trunkInstance, NetworkInterfaceId: dara.String(trunkID),
	})
	must(err, "AttachNetworkInterface trunk")
	waitStatus(trunkID, "InUse")
	check(dara.StringValue(describeOne(trunkID).Type) == "Trunk", "trunk type %s", dara.StringValue(describeOne(trunkID).Type))
	var members []string
	for i, g := range []string{"web", "db"} {
		m := create(&ecs.CreateNetworkInterfaceRequest{
			VSwitchId:        dara.String(vswitch),
			SecurityGroupIds: dara.StringSlice([]string{groups[g]}),
			Tag:              []*ecs.CreateNetworkInterfaceRequestTag{tag("sdk-check", "yes"), tag("kind", "member")},
			ClientToken:      dara.String(fmt.Sprintf("sdk-check-member-%d", i)),
		})
		id := dara.StringValue(m.NetworkInterfaceId)
		_, err = client.AttachNetworkInterface(&ecs.AttachNetworkInterfaceRequest{
			RegionId: region, InstanceId: trunkInstance, NetworkInterfaceId: dara.String(id), TrunkNetworkInstanceId: dara.String(trunkID),
		})
		must(err, "AttachNetworkInterface member")
		members = append(members, id)
	}
	vlans := map[int32]bool{}
	for i, id := range members {
		v := describeOne(id)
		check(dara.StringValue(v.Type) == "Member", "member type %s", dara.StringValue(v.Type))
		check(v.Attachment != nil && dara.StringValue(v.Attachment.TrunkNetworkInterfaceId) == trunkID, "member %d not on the trunk", i)
		if v.Attachment != nil {
			vlans[dara.Int32Value(v.Attachment.DeviceIndex)] = true
		}
		check(groupsOf(v)[0] == groups[[]string{"web", "db"}[i]], "member %d groups %v", i, groupsOf(v))
	}
	check(len(vlans) == 2 && !vlans[0], "member device indexes %v: want two distinct, non-zero", vlans)
	_, err = client.AttachNetworkInterface(&ecs.AttachNetworkInterfaceRequest{
		RegionId: region, InstanceId: plainInstance, NetworkInterfaceId: dara.String(pfxID), TrunkNetworkInstanceId: dara.String(trunkID),
	})
	check(code(err) == "InvalidParameter", "member on another instance's trunk: code %q", code(err))

	// Tag filters and paging: 11 more tagged ENIs, read back 10 at a time.
	var paged []string
	for i := 0; i < 11; i++ {
		p := create(&ecs.CreateNetworkInterfaceRequest{
			VSwitchId:        dara.String(vswitch),
			SecurityGroupIds: dara.StringSlice([]string{groups["default"]}),
			Tag:              []*ecs.CreateNetworkInterfaceRequestTag{tag("sdk-check", "yes"), tag("kind", "page")},
		})
		paged = append(paged, dara.StringValue(p.NetworkInterfaceId))
	}
	var seen []string
	token := ""
	pages := 0
	for {
		out, err := client.DescribeNetworkInterfaces(&ecs.DescribeNetworkInterfacesRequest{
			RegionId:   region,
			Tag:        []*ecs.DescribeNetworkInterfacesRequestTag{{Key: dara.String("kind"), Value: dara.String("page")}},
			MaxResults: dara.Int32(10),
			NextToken:  dara.String(token),
		})
		must(err, "DescribeNetworkInterfaces page")
		pages++
		for _, e := range out.Body.NetworkInterfaceSets.NetworkInterfaceSet {
			seen = append(seen, dara.StringValue(e.NetworkInterfaceId))
		}
		token = dara.StringValue(out.Body.NextToken)
		if token == "" || pages > 5 {
			break
		}
	}
	sort.Strings(seen)
	sort.Strings(paged)
	check(pages == 2 && fmt.Sprint(seen) == fmt.Sprint(paged), "paging: %d pages, %d of %d ENIs", pages, len(seen), len(paged))
	byTag, err := client.DescribeNetworkInterfaces(&ecs.DescribeNetworkInterfacesRequest{
		RegionId: region,
		Tag:      []*ecs.DescribeNetworkInterfacesRequestTag{{Key: dara.String("kind"), Value: dara.String("ips")}},
	})
	must(err, "DescribeNetworkInterfaces by tag")
	check(len(byTag.Body.NetworkInterfaceSets.NetworkInterfaceSet) == 1, "by tag kind=ips: %d", len(byTag.Body.NetworkInterfaceSets.NetworkInterfaceSet))
	byInstance, err := client.DescribeNetworkInterfaces(&ecs.DescribeNetworkInterfacesRequest{
		RegionId: region, InstanceId: plainInstance, Type: dara.String("Secondary"),
	})
	must(err, "DescribeNetworkInterfaces by instance")
	check(len(byInstance.Body.NetworkInterfaceSets.NetworkInterfaceSet) == 1, "secondaries of the plain instance: %d", len(byInstance.Body.NetworkInterfaceSets.NetworkInterfaceSet))
	_, err = client.TagResources(&ecs.TagResourcesRequest{
		RegionId: region, ResourceType: dara.String("eni"), ResourceId: dara.StringSlice([]string{ipsID}),
		Tag: []*ecs.TagResourcesRequestTag{{Key: dara.String("owner"), Value: dara.String("sdk")}},
	})
	must(err, "TagResources")
	tagged := false
	for _, t := range describeOne(ipsID).Tags.Tag {
		tagged = tagged || (dara.StringValue(t.TagKey) == "owner" && dara.StringValue(t.TagValue) == "sdk")
	}
	check(tagged, "TagResources: tag not on the ENI")

	// Detach (members off the trunk first), delete, read until gone.
	for _, id := range members {
		_, err = client.DetachNetworkInterface(&ecs.DetachNetworkInterfaceRequest{
			RegionId: region, InstanceId: trunkInstance, NetworkInterfaceId: dara.String(id), TrunkNetworkInstanceId: dara.String(trunkID),
		})
		must(err, "DetachNetworkInterface member")
		waitStatus(id, "Available")
	}
	for id, on := range map[string]string{trunkID: *trunkInstance, ipsID: *plainInstance} {
		_, err = client.DeleteNetworkInterface(&ecs.DeleteNetworkInterfaceRequest{RegionId: region, NetworkInterfaceId: dara.String(id)})
		check(code(err) == "InvalidOperation.InvalidEniState", "delete of an attached ENI: code %q", code(err))
		_, err = client.DetachNetworkInterface(&ecs.DetachNetworkInterfaceRequest{
			RegionId: region, InstanceId: dara.String(on), NetworkInterfaceId: dara.String(id),
		})
		must(err, "DetachNetworkInterface")
		waitStatus(id, "Available")
	}
	all := append(append([]string{ipsID, pfxID, trunkID}, members...), paged...)
	for _, id := range all {
		_, err = client.DeleteNetworkInterface(&ecs.DeleteNetworkInterfaceRequest{RegionId: region, NetworkInterfaceId: dara.String(id)})
		must(err, "DeleteNetworkInterface "+id)
	}
	for i := 0; i < 100 && len(describe(all...)) > 0; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	check(len(describe(all...)) == 0, "ENIs left after delete")
	_, err = client.DeleteNetworkInterface(&ecs.DeleteNetworkInterfaceRequest{RegionId: region, NetworkInterfaceId: dara.String(ipsID)})
	check(code(err) == "InvalidEniId.NotFound", "second delete: code %q", code(err))
	vsw, err = vpcClient.DescribeVSwitches(&vpc.DescribeVSwitchesRequest{RegionId: region, VSwitchId: dara.String(vswitch)})
	must(err, "DescribeVSwitches by id")
	after := dara.Int64Value(vsw.Body.VSwitches.VSwitch[0].AvailableIpAddressCount)
	check(after == free[vswitch], "free addresses %d after, %d before", after, free[vswitch])

	// Requests the endpoint must refuse.
	bad, _ := ecs.NewClient(config(*accessKey, "not-the-secret"))
	_, err = bad.DescribeInstances(&ecs.DescribeInstancesRequest{RegionId: region})
	check(code(err) == "SignatureDoesNotMatch", "wrong secret: code %q", code(err))
	unknown, _ := ecs.NewClient(config("no-such-key", *secret))
	_, err = unknown.DescribeInstances(&ecs.DescribeInstancesRequest{RegionId: region})
	check(code(err) == "InvalidAccessKeyId.NotFound", "unknown key: code %q", code(err))
	finish()
}

func describeOne(id string) *eniView { return one(id) }
