//! A fake VPC on the local kernel, made by vpc-sim's own materializer: a VPC router
//! namespace, one node namespace whose ENIs are real links (veth ends with the ENI's
//! MAC, named as on an instance), and pod namespaces. Packets really flow: the router
//! holds each subnet's gateway and routes every address an ENI holds to that ENI.
//!
//! Every call blocks: the materializer runs on a runtime of its own on a helper thread,
//! so sync tests and tests on any runtime use it alike. Everything is removed on drop,
//! also when the test panics. Needs root.

use std::future::Future;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use eni_crds::Mac;
use eni_crds::contract::gateway_of;
use ipnet::Ipv4Net;
use vpc_sim::dataplane_view::{
    DataplaneView, EniKind, EniPortView, IngressRule, NodeView, Protocol, SecurityGroupView,
};
use vpc_sim::materialize::{MaterializeError, Materializer, node_link, node_netns};

/// The one security group of the fake VPC: it lets everything in, so tests see the
/// dataplane under test and not the VPC's filtering.
const OPEN_GROUP: &str = "sg-0fa4e";

/// Name of the node in the fake VPC (its namespace is `<prefix>-node`).
const NODE: &str = "node";

#[derive(Debug, thiserror::Error)]
pub enum FakeVpcError {
    #[error("materializer: {0}")]
    Materialize(#[from] MaterializeError),
    #[error("{0}")]
    Netns(#[from] eni_netns::NetnsError),
    #[error("helper runtime: {0}")]
    Runtime(std::io::Error),
    #[error("helper thread panicked")]
    Thread,
}

impl FakeVpcError {
    /// Short, stable name of the failure, for reports.
    pub fn label(&self) -> &'static str {
        match self {
            FakeVpcError::Materialize(_) => "materialize",
            FakeVpcError::Netns(e) => e.label(),
            FakeVpcError::Runtime(_) => "runtime",
            FakeVpcError::Thread => "thread",
        }
    }
}

/// What an ENI is on its instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FakeEniKind {
    /// The instance's own ENI: the node's address (the first of `block`) and default
    /// route are configured at boot.
    Primary,
    Secondary,
    Trunk,
    /// A member ENI of trunk `trunk` (an ENI id) on VLAN `vlan_id`, handed to the node
    /// as its own link.
    Member {
        trunk: &'static str,
        vlan_id: u16,
    },
}

/// One ENI attached to the fake node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FakeEni {
    pub id: &'static str,
    pub mac: Mac,
    pub device_index: u32,
    pub subnet: Ipv4Net,
    /// Addresses the cloud has assigned to the ENI, as one delegated block; pods take
    /// theirs from it (the primary ENI holds just the node's address).
    pub block: Ipv4Net,
    pub kind: FakeEniKind,
}

impl FakeEni {
    /// Name of the ENI's link in the node namespace.
    pub fn link(&self) -> String {
        node_link(&self.view())
    }

    /// The ENI as vpc-sim's state machine would describe it to the materializer.
    fn view(&self) -> EniPortView {
        let (kind, addresses, prefixes) = match self.kind {
            FakeEniKind::Primary => (EniKind::Primary, vec![self.block.addr()], vec![]),
            FakeEniKind::Secondary => (EniKind::Secondary, vec![], vec![self.block]),
            FakeEniKind::Trunk => (EniKind::Trunk, vec![], vec![self.block]),
            FakeEniKind::Member { trunk, vlan_id } => (
                EniKind::Member {
                    trunk_eni_id: trunk.to_owned(),
                    vlan_id,
                },
                vec![],
                vec![self.block],
            ),
        };
        EniPortView {
            eni_id: self.id.to_owned(),
            mac: self.mac.to_string(),
            device_index: self.device_index,
            kind,
            addresses,
            prefixes,
            security_group_ids: vec![OPEN_GROUP.to_owned()],
            subnet_cidr: self.subnet,
            gateway: gateway_of(self.subnet),
        }
    }
}

/// A fake VPC with one node; see the module documentation.
pub struct FakeVpc {
    prefix: String,
    router: String,
    view: DataplaneView,
    pods: usize,
}

impl FakeVpc {
    /// A VPC router and a node holding `enis` (the primary first). `tag` (letters and
    /// digits) tells the test apart in namespace names; the pid and a counter are added.
    pub fn node(tag: &str, enis: &[FakeEni]) -> Result<Self, FakeVpcError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "fv{tag}{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let view = DataplaneView {
            nodes: vec![NodeView {
                instance_id: format!("i-{NODE}"),
                netns: node_netns(&prefix, NODE),
                enis: enis.iter().map(FakeEni::view).collect(),
            }],
            security_groups: vec![SecurityGroupView {
                group_id: OPEN_GROUP.to_owned(),
                ingress: vec![IngressRule {
                    protocol: Protocol::All,
                    from_port: 0,
                    to_port: 0,
                    cidrs: vec![Ipv4Net::new_assert(Ipv4Addr::UNSPECIFIED, 0)],
                    source_group_ids: vec![],
                }],
            }],
        };
        // Cleaned up on drop from here on, whatever fails next.
        let mut vpc = FakeVpc {
            prefix,
            router: String::new(),
            view,
            pods: 0,
        };
        vpc.router = vpc.converge()?;
        Ok(vpc)
    }

    /// Namespace of the node.
    pub fn host(&self) -> String {
        node_netns(&self.prefix, NODE)
    }

    pub fn host_path(&self) -> PathBuf {
        eni_netns::path(&self.host())
    }

    /// Namespace of the VPC router.
    pub fn router(&self) -> &str {
        &self.router
    }

    /// A new, empty pod namespace (loopback up): its name and path.
    pub fn pod(&mut self) -> Result<(String, PathBuf), FakeVpcError> {
        let name = format!("{}-p{}", self.prefix, self.pods);
        self.pods += 1;
        let created = name.clone();
        blocking(move || async move { eni_netns::create(&created).await })??;
        let path = eni_netns::path(&name);
        Ok((name, path))
    }

    /// Converges the kernel to the VPC again, e.g. to bring back an ENI link that died
    /// with a pod namespace (a veth, unlike a NIC, does not return to the node).
    pub fn apply(&self) -> Result<(), FakeVpcError> {
        self.converge().map(drop)
    }

    /// Runs the materializer once; returns the router namespace's name.
    fn converge(&self) -> Result<String, FakeVpcError> {
        let prefix = self.prefix.clone();
        let view = self.view.clone();
        blocking(move || async move {
            let mut materializer = Materializer::new(&prefix).await?;
            materializer.apply(&view).await?;
            Ok::<_, MaterializeError>(materializer.vpc_netns().to_owned())
        })?
        .map_err(FakeVpcError::from)
    }
}

impl Drop for FakeVpc {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        match blocking(move || async move { Materializer::cleanup(&prefix).await }) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("cleaning up fake VPC {}: {e}", self.prefix),
            Err(e) => eprintln!("cleaning up fake VPC {}: {e}", self.prefix),
        }
    }
}

/// Runs the future `make` returns on a runtime of its own, on a helper thread, and
/// waits for it: netlink sockets then live and die with that runtime, whatever runtime
/// (if any) the caller is on.
fn blocking<T, F, Fut>(make: F) -> Result<T, FakeVpcError>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(FakeVpcError::Runtime)?;
        Ok(runtime.block_on(make()))
    })
    .join()
    .map_err(|_| FakeVpcError::Thread)?
}
