//! The node dataplane: wires pods' network namespaces for each mode with rtnetlink.
//!
//! [`Dataplane`] works on a host namespace (the agent's own, or one named in the
//! config) and on each pod's namespace through netlink sockets opened inside them. It
//! keeps no state of its own: what is wired is read back from the kernel (link names
//! and ifaliases, rule and route protocol 225), so a restarted agent finds everything
//! ([`Dataplane::recover`]), and every call is idempotent. Calls that change the host
//! are serialised. See docs/datapaths.md for the exact links, routes and rules.

pub mod error;
mod expect;
mod kernel;
pub mod naming;
mod netns;
mod nft;
mod node_table;
mod passthrough;
mod pod_table;
mod probe;
pub mod requests;
mod service_redirect;
mod shaping;
mod shared_ipvlan;
mod shared_veth;
mod sweeps;
mod teardown;
mod trunk;
mod veth_pair;

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use eni_crds::contract::route_table;
use eni_crds::{Allocation, Datapath, Mac, Mode};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tracing::{info, warn};

pub use error::{DataplaneError, KernelFeature};
pub use naming::WiringKind;
pub use probe::{KernelFeatures, probe};
pub use teardown::RecoveredPod;

use crate::protocol::Bandwidth;
use kernel::{Link, Netlink};
use naming::{PodMarker, host_path_ifname, validate_container_id, validate_ifname};
use shaping::Shaping;
use sweeps::SweepTickets;

/// Where and for what the dataplane works.
#[derive(Clone, Debug)]
pub struct DataplaneConfig {
    /// The node's network namespace; `None` is the agent's own.
    pub host_netns: Option<PathBuf>,
    /// The node's address: Exclusive, Trunk and ipvlan pods reach the node through it.
    pub node_ip: Ipv4Addr,
    /// Service CIDRs that Exclusive and Trunk pods reach through their host veth.
    pub service_cidrs: Vec<Ipv4Net>,
    /// How pods reach destinations outside the VPC.
    pub egress: Egress,
}

/// How pod traffic leaves the VPC (the AWS VPC CNI's `AWS_VPC_K8S_CNI_EXTERNALSNAT` and
/// `AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS`, Terway's equivalent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Egress {
    /// `false` (the default): the node SNATs pod traffic to destinations outside
    /// `vpc_cidrs` and `exclude_snat_cidrs` to its primary address and sends it out of
    /// its primary ENI, as on a node with a public address. `true`: pods keep their
    /// address everywhere and leave through their own ENI, for a VPC NAT gateway.
    pub external_snat: bool,
    /// The VPC's CIDRs: reached with the pod's own address.
    pub vpc_cidrs: Vec<Ipv4Net>,
    /// Further destinations reached with the pod's own address (peered networks, VPN).
    pub exclude_snat_cidrs: Vec<Ipv4Net>,
}

impl Egress {
    /// Destinations pods reach with their own address through their ENI, sorted and
    /// without one inside another (nftables refuses overlapping set elements); `None`
    /// for all of them.
    pub fn direct(&self) -> Option<Vec<Ipv4Net>> {
        (!self.external_snat).then(|| {
            let all: Vec<Ipv4Net> = self
                .vpc_cidrs
                .iter()
                .chain(&self.exclude_snat_cidrs)
                .map(|n| n.trunc())
                .collect();
            let mut kept: Vec<Ipv4Net> = all
                .iter()
                .filter(|n| !all.iter().any(|o| o != *n && o.contains(*n)))
                .copied()
                .collect();
            kept.sort();
            kept.dedup();
            kept
        })
    }
}

/// One CNI ADD or CHECK: which container, where, and what it gets. The agent keeps it
/// in its state dir (as JSON) so that DEL can undo it after the PodNetwork is gone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PodRequest {
    /// CNI_CONTAINERID.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// CNI_NETNS.
    #[serde(rename = "netns")]
    pub netns_path: PathBuf,
    /// CNI_IFNAME.
    pub ifname: String,
    pub mode: Mode,
    pub allocation: Allocation,
    /// The runtime's limits for the pod's traffic (the `bandwidth` capability).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Bandwidth>,
}

impl PodRequest {
    /// The identity the host end of this container's wiring carries in its ifalias.
    fn marker(&self, kind: WiringKind) -> PodMarker {
        PodMarker {
            kind,
            ifname: self.ifname.clone(),
            container_id: self.container_id.clone(),
            netns: self.netns_path.clone(),
        }
    }
}

/// One CNI DEL: everything needed is read from the kernel, so no allocation.
#[derive(Clone, Debug)]
pub struct UnwireRequest {
    pub container_id: String,
    pub ifname: String,
    /// CNI_NETNS when the runtime still has it.
    pub netns_path: Option<PathBuf>,
    /// The pod's address, when known: lets an ipvlan pod whose namespace is already
    /// gone be cleaned from the host too.
    pub address: Option<Ipv4Addr>,
}

impl UnwireRequest {
    /// Undoes what `request` wired.
    pub fn of(request: &PodRequest) -> Self {
        UnwireRequest {
            container_id: request.container_id.clone(),
            ifname: request.ifname.clone(),
            netns_path: Some(request.netns_path.clone())
                .filter(|path| !path.as_os_str().is_empty()),
            address: Some(request.allocation.address),
        }
    }
}

/// A route in the pod's main table, for the CNI result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRoute {
    pub destination: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
}

/// What a wired pod looks like, for the CNI result and the PodNetwork status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WiredPod {
    pub kind: WiringKind,
    /// Host-side link: the veth end, or the shared ipvlan slave.
    pub host_ifname: String,
    pub host_mac: Mac,
    pub pod_ifname: String,
    pub pod_mac: Mac,
    /// The pod's address as configured on its interface.
    pub address: Ipv4Net,
    /// The pod's default next hop.
    pub gateway: Ipv4Addr,
    pub routes: Vec<PodRoute>,
}

/// A request checked before anything is touched, with what the datapaths derive from
/// its allocation.
#[derive(Clone, Debug)]
struct Checked {
    address: Ipv4Addr,
    prefix_len: u8,
    gateway: Ipv4Addr,
    /// The allocation's subnet without host bits.
    subnet: Ipv4Net,
    eni_mac: Mac,
    trunk_mac: Option<Mac>,
    table: u32,
    shaping: Shaping,
}

impl Checked {
    fn from_request(request: &PodRequest) -> Result<Self, DataplaneError> {
        validate_container_id(&request.container_id)?;
        validate_ifname(&request.ifname)?;
        if !request.netns_path.is_absolute() {
            return Err(DataplaneError::InvalidRequest(format!(
                "netns path {} is not absolute",
                request.netns_path.display()
            )));
        }
        // The identity marker must fit an ifalias; find out before making links.
        request.marker(WiringKind::SharedVeth).encode()?;
        let allocation = &request.allocation;
        let invalid = |what: &str, value: &dyn std::fmt::Display| {
            DataplaneError::InvalidRequest(format!("allocation {what} \"{value}\" is invalid"))
        };
        let address = allocation.address;
        let subnet = allocation.subnet_cidr.trunc();
        if !(1..=32).contains(&allocation.prefix_length) {
            return Err(invalid("prefixLength", &allocation.prefix_length));
        }
        if !subnet.contains(&address) {
            return Err(DataplaneError::InvalidRequest(format!(
                "address {address} is outside subnet {subnet}"
            )));
        }
        let table = allocation
            .route_table
            .unwrap_or_else(|| route_table(allocation.device_index));
        // 0 and 253..=255 are the kernel's unspec, default, main and local tables.
        if table == 0 || (253..=255).contains(&table) {
            return Err(invalid("routeTable", &table));
        }
        let shaping = match &request.bandwidth {
            Some(bandwidth) => Shaping::plan(bandwidth)?,
            None => Shaping::default(),
        };
        Ok(Checked {
            shaping,
            address,
            prefix_len: allocation.prefix_length,
            gateway: allocation.gateway,
            subnet,
            eni_mac: allocation.eni_mac,
            trunk_mac: allocation.trunk_mac,
            table,
        })
    }

    /// The address with the allocation's prefix length (Exclusive, Trunk, ipvlan).
    fn pod_net(&self) -> Ipv4Net {
        Ipv4Net::new(self.address, self.prefix_len).unwrap_or_else(|_| Ipv4Net::from(self.address))
    }
}

/// The pod's namespace and the links of its own there that carry its traffic: the
/// interface the runtime named and, for passthrough pods, the veth to the node.
async fn pod_links(request: &PodRequest) -> Result<(Netlink, Vec<Link>), DataplaneError> {
    let pod = netns::netlink(&request.netns_path).await?;
    let mut names = vec![request.ifname.clone()];
    if path_of(request) == Path::Passthrough {
        names.push(host_path_ifname(&request.ifname));
    }
    let links = pod
        .links()
        .await?
        .into_iter()
        .filter(|l| names.contains(&l.name))
        .collect();
    Ok((pod, links))
}

/// CHECK's report of an ENI link that is not in the host (any more).
fn missing_eni(mac: Mac) -> String {
    format!("host: no ENI link with MAC {mac}")
}

/// Which datapath a request takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    SharedVeth,
    SharedIpvlan,
    Passthrough,
}

fn path_of(request: &PodRequest) -> Path {
    match (
        request.mode,
        request.allocation.datapath.unwrap_or_default(),
    ) {
        (Mode::SharedIp, Datapath::VethPolicyRouting) => Path::SharedVeth,
        (Mode::SharedIp, Datapath::IpVlan) => Path::SharedIpvlan,
        (Mode::Exclusive | Mode::Trunk, _) => Path::Passthrough,
    }
}

/// The node dataplane.
pub struct Dataplane {
    config: DataplaneConfig,
    host: Netlink,
    /// Path of the host namespace, to enter it for sysctls.
    host_path: PathBuf,
    /// The host namespace, kept open so that links go back to the very same one.
    host_file: File,
    features: KernelFeatures,
    /// Serialises changes to shared host state (ENI tables, rules, sweeps); a pod's
    /// own veth and namespace are wired outside it.
    lock: Mutex<()>,
    sweeps: SweepTickets,
    /// When this process last found (or made) the node's nftables table as wanted: ADD
    /// lists it again (an `nft` process) only after [`node_table::RECHECK`].
    node_table_checked: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Dataplane {
    /// Connects to the host namespace and probes the kernel's optional features.
    pub async fn new(config: DataplaneConfig) -> Result<Self, DataplaneError> {
        if config.egress.direct().is_some_and(|d| d.is_empty()) {
            return Err(DataplaneError::InvalidRequest(
                "SNAT to the node's address is on (externalSNAT false) but no VPC CIDR is \
                 configured: every pod-to-pod packet would be SNATed"
                    .into(),
            ));
        }
        let host_path = netns::path_or_self(config.host_netns.as_deref());
        let host_file = netns::open(&host_path)?;
        let host = netns::netlink(&host_path).await?;
        let features = probe().await?;
        info!(host = %host_path.display(), ?features, "dataplane ready");
        Ok(Dataplane {
            config,
            host,
            host_path,
            host_file,
            features,
            lock: Mutex::new(()),
            sweeps: SweepTickets::default(),
            node_table_checked: std::sync::Mutex::new(None),
        })
    }

    pub fn features(&self) -> KernelFeatures {
        self.features
    }

    /// Wires the pod (CNI ADD). Wiring a wired pod again converges to the same state.
    /// A request the node cannot serve (bad input, missing kernel feature, ENI not
    /// attached) fails before anything changes; a failure half-way is rolled back.
    pub async fn wire(&self, request: &PodRequest) -> Result<WiredPod, DataplaneError> {
        let checked = Checked::from_request(request)?;
        // The SharedIP veth path takes the lock for its host part only (it is the one
        // many pods of a node take at once); the others take it throughout.
        let result = match path_of(request) {
            Path::SharedVeth => self.wire_shared_veth(request, &checked).await,
            Path::SharedIpvlan => {
                let _guard = self.lock.lock().await;
                self.wire_ipvlan(request, &checked).await
            }
            Path::Passthrough => {
                let _guard = self.lock.lock().await;
                self.wire_passthrough(request, &checked).await
            }
        };
        let result = match result {
            Ok(wired) => self.shape(request, &checked).await.map(|()| wired),
            Err(e) => Err(e),
        };
        match &result {
            Ok(wired) => {
                info!(container = %request.container_id, kind = ?wired.kind, address = %wired.address, "pod wired")
            }
            Err(
                DataplaneError::InvalidRequest(_)
                | DataplaneError::FeatureMissing { .. }
                | DataplaneError::EniNotFound { .. }
                | DataplaneError::Conflict { .. },
            ) => {}
            Err(error) => {
                warn!(container = %request.container_id, %error, "wiring failed; rolling back");
                let _guard = self.lock.lock().await;
                if let Err(rollback) = self
                    .unwire_locked(
                        &request.container_id,
                        &request.ifname,
                        Some(&request.netns_path),
                        Some(checked.address),
                    )
                    .await
                {
                    warn!(container = %request.container_id, error = %rollback, "rollback failed");
                }
            }
        }
        result
    }

    /// Unwires the pod (CNI DEL); succeeds when there is nothing (left) to remove.
    pub async fn unwire(&self, request: &UnwireRequest) -> Result<(), DataplaneError> {
        validate_container_id(&request.container_id)?;
        validate_ifname(&request.ifname)?;
        // Unregistering a veth pair is the kernel's slow part of DEL; a SharedIP veth
        // pod's pair is its own, so it goes before the lock, alongside other requests.
        self.delete_own_veth(
            &request.container_id,
            &request.ifname,
            WiringKind::SharedVeth,
        )
        .await?;
        let ticket = {
            let _guard = self.lock.lock().await;
            self.remove_pod_locked(
                &request.container_id,
                &request.ifname,
                request.netns_path.as_deref(),
                request.address,
            )
            .await?;
            self.sweeps.issue()
        };
        // DELs that arrived together queued for the lock behind this one: the first of
        // them back sweeps for all whose links were gone by then.
        let _guard = self.lock.lock().await;
        if !self.sweeps.covered(ticket) {
            let begun = self.sweeps.begin();
            self.sweep().await?;
            self.sweeps.finished(begun);
        }
        info!(container = %request.container_id, ifname = %request.ifname, "pod unwired");
        Ok(())
    }

    /// Compares the pod's wiring with what [`Dataplane::wire`] makes (CNI CHECK);
    /// returns one line per difference, none when all is as wired.
    pub async fn check(&self, request: &PodRequest) -> Result<Vec<String>, DataplaneError> {
        let checked = Checked::from_request(request)?;
        if !request.netns_path.exists() {
            return Ok(vec![format!(
                "pod: namespace {} is gone",
                request.netns_path.display()
            )]);
        }
        let mut differences = match path_of(request) {
            Path::SharedVeth => self.check_shared_veth(request, &checked).await,
            Path::SharedIpvlan => self.check_ipvlan(request, &checked).await,
            Path::Passthrough => self.check_passthrough(request, &checked).await,
        }?;
        if checked.shaping != Shaping::default() {
            let (pod, links) = pod_links(request).await?;
            differences.extend(
                checked
                    .shaping
                    .differences(&pod, &request.ifname, &links)
                    .await?,
            );
        }
        Ok(differences)
    }

    /// Puts the pod's bandwidth limits in its namespace, when it has any.
    async fn shape(&self, request: &PodRequest, checked: &Checked) -> Result<(), DataplaneError> {
        if checked.shaping == Shaping::default() {
            return Ok(());
        }
        let (pod, links) = pod_links(request).await?;
        checked.shaping.apply(&pod, &request.ifname, &links).await?;
        info!(container = %request.container_id, shaping = ?checked.shaping, "bandwidth limits set");
        Ok(())
    }

    /// The ENI link with `mac` in the host.
    async fn eni_link(&self, mac: Mac) -> Result<Link, DataplaneError> {
        self.host
            .link_by_mac(mac)
            .await?
            .ok_or(DataplaneError::EniNotFound { mac })
    }

    /// Host sysctls the datapaths rely on: forwarding on, and proxy-ARP answers on the
    /// ENI link without the kernel's random delay of up to 0.8 s.
    /// The node table's SNAT, from the configuration.
    fn node_nat(&self) -> node_table::NodeNat {
        node_table::NodeNat {
            node_ip: self.config.node_ip,
            shared_direct: self.config.egress.direct(),
        }
    }

    async fn prepare_host(&self, eni: Option<&Link>) -> Result<(), DataplaneError> {
        let mut settings = vec![("ipv4/ip_forward".to_string(), "1")];
        if let Some(eni) = eni {
            settings.push((format!("ipv4/neigh/{}/proxy_delay", eni.name), "0"));
        }
        netns::run_in(&self.host_path, move || {
            for (key, value) in &settings {
                // Rewriting ip_forward resets per-device settings: only write changes.
                if netns::read_sysctl(key)? != *value {
                    netns::write_sysctl(key, value)?;
                }
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> PodRequest {
        PodRequest {
            container_id: "abc".into(),
            netns_path: PathBuf::from("/run/netns/pod"),
            ifname: "eth0".into(),
            mode: Mode::SharedIp,
            allocation: Allocation {
                address: Ipv4Addr::new(10, 0, 1, 20),
                prefix_length: 32,
                gateway: Ipv4Addr::new(10, 0, 1, 1),
                subnet_cidr: "10.0.1.0/24".parse().unwrap(),
                subnet_id: "subnet-1".into(),
                eni_id: "eni-1".into(),
                eni_mac: Mac::new([2, 0, 0, 0, 0, 5]),
                device_index: 2,
                ..Allocation::default()
            },
            bandwidth: None,
        }
    }

    #[test]
    fn table_is_1000_plus_device_index_unless_named() {
        assert_eq!(Checked::from_request(&request()).unwrap().table, 1002);
        let mut named = request();
        named.allocation.route_table = Some(77);
        assert_eq!(Checked::from_request(&named).unwrap().table, 77);
    }

    #[test]
    fn reserved_tables_and_bad_allocations_are_refused() {
        type Change = Box<dyn Fn(&mut PodRequest)>;
        let cases: Vec<Change> = vec![
            Box::new(|r| r.allocation.route_table = Some(254)),
            Box::new(|r| r.allocation.route_table = Some(255)),
            Box::new(|r| r.allocation.address = Ipv4Addr::new(10, 0, 2, 5)),
            Box::new(|r| r.allocation.prefix_length = 0),
            Box::new(|r| r.allocation.prefix_length = 33),
            Box::new(|r| r.container_id = "a b".into()),
            Box::new(|r| r.ifname = "much-too-long-name".into()),
            Box::new(|r| r.netns_path = PathBuf::from("relative")),
        ];
        for (i, change) in cases.iter().enumerate() {
            let mut bad = request();
            change(&mut bad);
            assert!(
                matches!(
                    Checked::from_request(&bad),
                    Err(DataplaneError::InvalidRequest(_))
                ),
                "case {i}"
            );
        }
    }

    #[test]
    fn pod_net_keeps_the_allocation_prefix() {
        let mut exclusive = request();
        exclusive.allocation.prefix_length = 24;
        let checked = Checked::from_request(&exclusive).unwrap();
        assert_eq!(checked.pod_net().to_string(), "10.0.1.20/24");
    }

    #[test]
    fn datapath_follows_mode_and_allocation() {
        let mut r = request();
        assert_eq!(path_of(&r), Path::SharedVeth);
        r.allocation.datapath = Some(Datapath::IpVlan);
        assert_eq!(path_of(&r), Path::SharedIpvlan);
        r.mode = Mode::Exclusive;
        assert_eq!(path_of(&r), Path::Passthrough);
        r.mode = Mode::Trunk;
        assert_eq!(path_of(&r), Path::Passthrough);
    }

    #[test]
    fn ipvlan_is_refused_up_front_only_where_the_kernel_lacks_it() {
        let mut ipvlan = request();
        ipvlan.allocation.datapath = Some(Datapath::IpVlan);
        let lacking = KernelFeatures::default();
        let having = KernelFeatures {
            ipvlan: true,
            vlan: false,
        };
        let refusal = lacking.refusal(Mode::SharedIp, &ipvlan.allocation);
        assert!(refusal.is_some_and(|why| why.contains("ipvlan")));
        assert_eq!(having.refusal(Mode::SharedIp, &ipvlan.allocation), None);
        // VLAN need is only known while wiring (a member may arrive as its own link).
        assert_eq!(lacking.refusal(Mode::Trunk, &request().allocation), None);
        assert_eq!(lacking.refusal(Mode::SharedIp, &request().allocation), None);
    }
}
