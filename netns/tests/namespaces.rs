//! Named namespaces, work inside them, netlink and sysctls, against the real kernel.
//! Needs root.

use std::os::unix::fs::MetadataExt;

use futures::TryStreamExt;
use netlink_packet_route::link::{LinkAttribute, LinkFlags};

/// Inode of the calling thread's network namespace: equal inodes, same namespace.
fn own_netns() -> u64 {
    std::fs::metadata("/proc/thread-self/ns/net")
        .expect("own namespace")
        .ino()
}

fn name(test: &str) -> String {
    format!("nst{test}{}", std::process::id())
}

#[tokio::test]
async fn create_enter_configure_and_delete() {
    let ns = name("life");
    eni_netns::create(&ns).await.expect("create");
    assert!(eni_netns::exists(&ns));
    assert!(eni_netns::list().expect("list").contains(&ns));
    eni_netns::create(&ns).await.expect("create again keeps it");
    let path = eni_netns::path(&ns);

    let outside = own_netns();
    let inside = eni_netns::run_in(&path, own_netns).await.expect("run_in");
    assert_ne!(inside, outside, "work ran in another namespace");
    let again = eni_netns::run_in_blocking(&path, own_netns).expect("blocking");
    assert_eq!(again, inside, "same namespace each time");
    assert_eq!(own_netns(), outside, "the caller's thread never moved");

    // Sysctls are per namespace.
    let key = "ipv4/ip_forward";
    eni_netns::run_in(&path, move || eni_netns::write_sysctl(key, "1"))
        .await
        .expect("thread")
        .expect("write");
    let value = eni_netns::run_in(&path, move || eni_netns::read_sysctl(key))
        .await
        .expect("thread")
        .expect("read");
    assert_eq!(value, "1");

    // The netlink socket sees the namespace's links: only lo, and it is up.
    let (handle, task) = eni_netns::netlink(&path).await.expect("netlink");
    assert_eq!(links(&handle).await, vec![("lo".to_string(), true)]);
    task.abort();

    eni_netns::delete(&ns).expect("delete");
    assert!(!eni_netns::exists(&ns));
    eni_netns::delete(&ns).expect("delete twice");
    let error = eni_netns::run_in(&path, || ()).await.expect_err("gone");
    assert!(
        matches!(error, eni_netns::NetnsError::Open { .. }),
        "{error}"
    );
    assert_eq!(error.label(), "netns_open");
}

#[tokio::test]
async fn scratch_namespace_is_fresh() {
    let outside = own_netns();
    let inside = eni_netns::run_in_scratch(own_netns).await.expect("scratch");
    assert_ne!(inside, outside);
    let (handle, task) = eni_netns::scratch_netlink().await.expect("netlink");
    let links = links(&handle).await;
    task.abort();
    assert_eq!(links.len(), 1, "only lo in a fresh namespace: {links:?}");
    assert_eq!(links[0].0, "lo");
}

/// `(name, up)` of every link the handle's namespace has.
async fn links(handle: &rtnetlink::Handle) -> Vec<(String, bool)> {
    let messages: Vec<_> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .expect("links");
    messages
        .iter()
        .map(|l| {
            let name = l.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            });
            (
                name.unwrap_or_default(),
                l.header.flags.contains(LinkFlags::Up),
            )
        })
        .collect()
}
