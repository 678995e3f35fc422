//! The veth pair between host and pod that every datapath but ipvlan uses, and the
//! link lookups the datapaths share.

use std::os::fd::BorrowedFd;

use eni_crds::Mac;

use super::PodRequest;
use super::error::DataplaneError;
use super::kernel::{Link, Netlink};
use super::naming::{PodLinkMarker, PodLinkOrigin, PodMarker, WiringKind, host_ifname};
use super::node_table::host_group;
use super::requests;

/// The two ends of a pod's veth pair.
pub struct VethPair {
    pub host: Link,
    pub pod: Link,
}

/// Makes sure the veth pair of `request`'s container exists and is the pod's: the host
/// end named for the container and marked with `kind`, the pod end `pod_name`. Reuses
/// it when already wired (ADD twice), recreates it when only the host end is left,
/// refuses names held by something else.
pub async fn ensure_veth(
    host: &Netlink,
    pod: &Netlink,
    pod_netns: BorrowedFd<'_>,
    request: &PodRequest,
    kind: WiringKind,
    pod_name: &str,
) -> Result<VethPair, DataplaneError> {
    let host_name = &host_ifname(&request.container_id, &request.ifname);
    let marker = &request.marker(kind);
    let host_link = host.link_by_name(host_name).await?;
    let pod_link = pod.link_by_name(pod_name).await?;
    if let Some(link) = &host_link {
        let ours = link
            .alias
            .as_deref()
            .and_then(PodMarker::parse)
            .is_some_and(|m| {
                m.container_id == marker.container_id
                    && m.ifname == marker.ifname
                    && m.kind == marker.kind
            });
        if !ours {
            return Err(DataplaneError::Conflict {
                name: host_name.to_string(),
                detail: format!("host link has alias {:?}", link.alias),
            });
        }
        if let Some(pod_link) = pod_link {
            // Pods wired before the interface groups existed get theirs now.
            if link.group != host_group(kind) {
                host.set_link(
                    requests::link_group(link.index, host_group(kind)),
                    &format!("putting {host_name} into its group"),
                )
                .await?;
            }
            return Ok(VethPair {
                host: link.clone(),
                pod: pod_link,
            });
        }
        // A host end whose pod end is gone is a leftover: start again.
        host.delete_link(link.index).await?;
    } else if pod_link.is_some() {
        return Err(DataplaneError::Conflict {
            name: pod_name.to_string(),
            detail: "the pod already has a link of that name".into(),
        });
    }
    host.add_link(
        requests::veth_pair(host_name, pod_name, pod_netns),
        &format!("creating veth {host_name}/{pod_name}"),
    )
    .await?;
    let host_link = require_link(host, host_name, "host").await?;
    host.set_link(
        requests::link_alias(host_link.index, &marker.encode()?),
        &format!("marking {host_name}"),
    )
    .await?;
    host.set_link(
        requests::link_group(host_link.index, host_group(kind)),
        &format!("putting {host_name} into its group"),
    )
    .await?;
    let pod_link = require_link(pod, pod_name, "pod").await?;
    Ok(VethPair {
        host: host_link,
        pod: pod_link,
    })
}

/// The link `name`, which must exist (it was just created or checked).
pub async fn require_link(nl: &Netlink, name: &str, side: &str) -> Result<Link, DataplaneError> {
    nl.link_by_name(name)
        .await?
        .ok_or_else(|| DataplaneError::Conflict {
            name: name.to_string(),
            detail: format!("vanished from the {side} namespace while wiring"),
        })
}

/// The link `<ifname>` just made in the pod, marked as this container's, made as
/// `origin` says; `what` names the step in errors.
pub async fn mark_pod_link(
    pod: &Netlink,
    request: &PodRequest,
    origin: PodLinkOrigin,
    what: &str,
) -> Result<Link, DataplaneError> {
    let link = require_link(pod, &request.ifname, "pod").await?;
    let marker = PodLinkMarker {
        container_id: request.container_id.clone(),
        origin,
    };
    pod.set_link(requests::link_alias(link.index, &marker.encode()?), what)
        .await?;
    Ok(link)
}

/// MAC of a link that must have one (veth, ENI).
pub fn mac_of(link: &Link) -> Result<Mac, DataplaneError> {
    link.mac
        .map(Mac::new)
        .ok_or_else(|| DataplaneError::Conflict {
            name: link.name.clone(),
            detail: "link has no Ethernet address".into(),
        })
}
