//! The EC2 Query API and the admin API over real HTTP, driven with raw requests.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};
use vpc_sim::behaviour::SimConfig;
use vpc_sim::server::{self, ServerConfig, ServerHandle};
use vpc_sim::sigv4::{self, Credentials, RequestParts};

const NS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";
const AMZ_DATE: &str = "20240101T000000Z";

async fn start(behaviour: SimConfig) -> ServerHandle {
    let mut config = ServerConfig::new().unwrap();
    config.behaviour = behaviour;
    server::spawn(config).await.unwrap()
}

struct Client {
    http: reqwest::Client,
    url: String,
    admin: String,
    creds: Credentials,
}

struct Answer {
    status: u16,
    body: String,
}

impl Answer {
    fn doc(&self) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(&self.body).unwrap()
    }

    /// Text of every element named `tag`, in document order.
    fn all(&self, tag: &str) -> Vec<String> {
        self.doc()
            .descendants()
            .filter(|n| n.has_tag_name(tag))
            .map(|n| n.text().unwrap_or_default().to_owned())
            .collect()
    }

    fn one(&self, tag: &str) -> String {
        let all = self.all(tag);
        assert!(!all.is_empty(), "no <{tag}> in {}", self.body);
        all[0].clone()
    }

    fn error_code(&self) -> String {
        let doc = self.doc();
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "Response", "{}", self.body);
        let errors = root.children().find(|n| n.has_tag_name("Errors")).unwrap();
        let error = errors.children().find(|n| n.has_tag_name("Error")).unwrap();
        assert!(error.children().any(|n| n.has_tag_name("Message")));
        assert!(root.children().any(|n| n.has_tag_name("RequestID")));
        error
            .children()
            .find(|n| n.has_tag_name("Code"))
            .unwrap()
            .text()
            .unwrap()
            .to_owned()
    }
}

impl Client {
    fn new(h: &ServerHandle) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: h.ec2_url.clone(),
            admin: h.admin_url.clone(),
            creds: Credentials::default(),
        }
    }

    async fn call(&self, action: &str, params: &[(&str, &str)]) -> Answer {
        self.call_with(action, params, None).await.unwrap()
    }

    async fn call_with(
        &self,
        action: &str,
        params: &[(&str, &str)],
        timeout: Option<Duration>,
    ) -> reqwest::Result<Answer> {
        let mut pairs = vec![("Action", action), ("Version", "2016-11-15")];
        pairs.extend_from_slice(params);
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        let host = self.url.trim_start_matches("http://").to_owned();
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_str(&host).unwrap());
        headers.insert("x-amz-date", HeaderValue::from_static(AMZ_DATE));
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
        );
        let parts = RequestParts {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body: body.as_bytes(),
        };
        let auth = sigv4::authorization(
            &parts,
            &self.creds,
            AMZ_DATE,
            "us-east-1",
            &["content-type", "host", "x-amz-date"],
        );
        let mut req = self
            .http
            .post(format!("{}/", self.url))
            .header("x-amz-date", AMZ_DATE)
            .header(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .header("authorization", auth)
            .body(body);
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        Ok(Answer {
            status,
            body: resp.text().await?,
        })
    }

    async fn admin_post(&self, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.admin))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.unwrap_or(Value::Null)
    }

    async fn admin_put(&self, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .put(format!("{}{path}", self.admin))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    async fn admin_get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.admin))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn subnet(&self, name: &str) -> String {
        let a = self
            .call(
                "DescribeSubnets",
                &[("Filter.1.Name", "tag:Name"), ("Filter.1.Value.1", name)],
            )
            .await;
        a.one("subnetId")
    }

    async fn register(&self, node: &str, itype: &str) -> Value {
        self.admin_post(
            "/instances",
            json!({"node_name": node, "instance_type": itype, "subnet": "nodes-a"}),
        )
        .await
    }

    async fn create_eni(&self, params: &[(&str, &str)]) -> Answer {
        let subnet = self.subnet("pods-a").await;
        let mut p = vec![("SubnetId", subnet.as_str())];
        p.extend_from_slice(params);
        self.call("CreateNetworkInterface", &p).await
    }
}

fn is_ec2_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|h| h.strip_prefix('-'))
        .is_some_and(|h| h.len() == 17 && h.chars().all(|c| c.is_ascii_hexdigit()))
}

#[tokio::test]
async fn describe_subnets_has_ec2_shape() {
    let h = start(SimConfig::instant()).await;
    let c = Client::new(&h);
    let a = c.call("DescribeSubnets", &[]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let doc = a.doc();
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "DescribeSubnetsResponse");
    assert_eq!(root.tag_name().namespace(), Some(NS));
    assert!(root.children().any(|n| n.has_tag_name("requestId")));
    let subnets = a.all("subnetId");
    assert_eq!(subnets.len(), 4);
    assert!(subnets.iter().all(|s| is_ec2_id(s, "subnet")));
    let counts = a.all("availableIpAddressCount");
    assert!(
        counts.contains(&"251".to_owned()) && counts.contains(&"11".to_owned()),
        "{counts:?}"
    );
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn get_query_requests_work_too() {
    let h = start(SimConfig::instant()).await;
    let c = Client::new(&h);
    let query = "Action=DescribeInstanceTypes&Version=2016-11-15&InstanceType.1=m5.large";
    let mut headers = HeaderMap::new();
    let host = h.ec2_url.trim_start_matches("http://").to_owned();
    headers.insert("host", HeaderValue::from_str(&host).unwrap());
    headers.insert("x-amz-date", HeaderValue::from_static(AMZ_DATE));
    let parts = RequestParts {
        method: "GET",
        path: "/",
        query,
        headers: &headers,
        body: b"",
    };
    let auth = sigv4::authorization(
        &parts,
        &c.creds,
        AMZ_DATE,
        "us-east-1",
        &["host", "x-amz-date"],
    );
    let resp = c
        .http
        .get(format!("{}/?{query}", h.ec2_url))
        .header("x-amz-date", AMZ_DATE)
        .header("authorization", auth)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let a = Answer {
        status: 200,
        body: resp.text().await.unwrap(),
    };
    assert_eq!(a.all("instanceType"), vec!["m5.large"]);
    assert_eq!(a.one("maximumNetworkInterfaces"), "3");
    assert_eq!(a.one("ipv4AddressesPerInterface"), "10");
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn authentication_is_checked() {
    let h = start(SimConfig::instant()).await;
    let mut c = Client::new(&h);
    c.creds = Credentials {
        access_key: "stranger".into(),
        secret_key: "vpcsim-secret".into(),
    };
    let a = c.call("DescribeSubnets", &[]).await;
    assert_eq!((a.status, a.error_code().as_str()), (401, "AuthFailure"));
    c.creds = Credentials {
        access_key: "vpcsim".into(),
        secret_key: "wrong".into(),
    };
    let a = c.call("DescribeSubnets", &[]).await;
    assert_eq!(
        (a.status, a.error_code().as_str()),
        (403, "SignatureDoesNotMatch")
    );
    let raw = c
        .http
        .post(format!("{}/", h.ec2_url))
        .body("Action=DescribeSubnets")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 401);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn enis_are_created_tagged_filtered_and_paginated() {
    let h = start(SimConfig::instant()).await;
    let c = Client::new(&h);
    for i in 0..12 {
        let owner = if i % 2 == 0 { "even" } else { "odd" };
        let a = c
            .create_eni(&[
                ("SecondaryPrivateIpAddressCount", "2"),
                ("TagSpecification.1.ResourceType", "network-interface"),
                ("TagSpecification.1.Tag.1.Key", "owner"),
                ("TagSpecification.1.Tag.1.Value", owner),
                ("Description", "test eni"),
            ])
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        let id = a.one("networkInterfaceId");
        assert!(is_ec2_id(&id, "eni"), "{id}");
        let mac = a.one("macAddress");
        assert!(mac.starts_with("02:") && mac.len() == 17, "{mac}");
        assert_eq!(a.one("status"), "available");
        assert_eq!(a.all("primary"), vec!["true", "false", "false"]);
    }
    let odd = c
        .call(
            "DescribeNetworkInterfaces",
            &[("Filter.1.Name", "tag:owner"), ("Filter.1.Value.1", "odd")],
        )
        .await;
    assert_eq!(odd.all("networkInterfaceId").len(), 6);
    let avail = c
        .call(
            "DescribeNetworkInterfaces",
            &[
                ("Filter.1.Name", "status"),
                ("Filter.1.Value.1", "available"),
                ("Filter.2.Name", "tag-key"),
                ("Filter.2.Value.1", "owner"),
            ],
        )
        .await;
    assert_eq!(avail.all("networkInterfaceId").len(), 12);

    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut p = vec![("MaxResults", "5")];
        if let Some(t) = &token {
            p.push(("NextToken", t.as_str()));
        }
        let page = c.call("DescribeNetworkInterfaces", &p).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let ids = page.all("networkInterfaceId");
        assert!(ids.len() <= 5);
        seen.extend(ids);
        token = page.all("nextToken").into_iter().next();
        if token.is_none() {
            break;
        }
    }
    let unique: std::collections::BTreeSet<_> = seen.iter().collect();
    assert_eq!((seen.len(), unique.len()), (12, 12));
    let bad = c
        .call("DescribeNetworkInterfaces", &[("MaxResults", "2")])
        .await;
    assert_eq!(bad.error_code(), "InvalidParameterValue");
    let bad_filter = c
        .call(
            "DescribeNetworkInterfaces",
            &[("Filter.1.Name", "colour"), ("Filter.1.Value.1", "x")],
        )
        .await;
    assert_eq!(bad_filter.error_code(), "InvalidParameterValue");
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn errors_are_ec2_error_documents() {
    let h = start(SimConfig::instant()).await;
    let c = Client::new(&h);
    let a = c
        .call(
            "DeleteNetworkInterface",
            &[("NetworkInterfaceId", "eni-0123456789abcdef0")],
        )
        .await;
    assert_eq!(
        (a.status, a.error_code().as_str()),
        (400, "InvalidNetworkInterfaceID.NotFound")
    );
    let a = c.call("RunInstances", &[]).await;
    assert_eq!(a.error_code(), "InvalidAction");
    let a = c
        .call(
            "AttachNetworkInterface",
            &[("NetworkInterfaceId", "eni-0123456789abcdef0")],
        )
        .await;
    assert_eq!(a.error_code(), "MissingParameter");
    let a = c.call("DescribeSubnets", &[("DryRun", "true")]).await;
    assert_eq!(
        (a.status, a.error_code().as_str()),
        (412, "DryRunOperation")
    );
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn attach_goes_through_attaching_and_shows_in_instances_and_the_view() {
    let mut cfg = SimConfig::instant();
    cfg.attach_delay_ms = 300;
    let h = start(cfg).await;
    let c = Client::new(&h);
    let node = c.register("node-a", "m5.large").await;
    let instance = node["instance_id"].as_str().unwrap().to_owned();
    assert!(is_ec2_id(&instance, "i"));
    assert_eq!(node["provider_id"], format!("aws:///us-east-1a/{instance}"));
    let eni = c.create_eni(&[]).await.one("networkInterfaceId");
    let a = c
        .call(
            "AttachNetworkInterface",
            &[
                ("NetworkInterfaceId", &eni),
                ("InstanceId", &instance),
                ("DeviceIndex", "1"),
            ],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(is_ec2_id(&a.one("attachmentId"), "eni-attach"));
    let d = c
        .call(
            "DescribeNetworkInterfaces",
            &[("NetworkInterfaceId.1", &eni)],
        )
        .await;
    assert_eq!(d.one("status"), "attaching");
    let mut views = h.views();
    tokio::time::timeout(
        Duration::from_secs(3),
        views.wait_for(|v| v.nodes[0].enis.iter().any(|p| p.eni_id == eni)),
    )
    .await
    .unwrap()
    .unwrap();
    let d = c
        .call(
            "DescribeNetworkInterfaces",
            &[
                ("Filter.1.Name", "attachment.instance-id"),
                ("Filter.1.Value.1", &instance),
            ],
        )
        .await;
    assert_eq!(d.all("networkInterfaceId").len(), 2);
    assert!(d.all("status").contains(&"in-use".to_owned()));
    let inst = c
        .call("DescribeInstances", &[("InstanceId.1", &instance)])
        .await;
    assert_eq!(inst.one("instanceId"), instance);
    assert_eq!(inst.all("deviceIndex"), vec!["0", "1"]);
    let view = c.admin_get("/dataplane").await;
    assert_eq!(view["nodes"][0]["enis"].as_array().unwrap().len(), 2);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn addresses_and_prefixes_are_assigned_and_unassigned() {
    let h = start(SimConfig::instant()).await;
    let c = Client::new(&h);
    let eni = c.create_eni(&[]).await.one("networkInterfaceId");
    let a = c
        .call(
            "AssignPrivateIpAddresses",
            &[
                ("NetworkInterfaceId", &eni),
                ("SecondaryPrivateIpAddressCount", "3"),
            ],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let ips = a.all("privateIpAddress");
    assert_eq!(ips.len(), 3);
    let p = c
        .call(
            "AssignPrivateIpAddresses",
            &[("NetworkInterfaceId", &eni), ("Ipv4PrefixCount", "1")],
        )
        .await;
    let prefix = p.one("ipv4Prefix");
    assert!(prefix.ends_with("/28"), "{prefix}");
    let other = c.create_eni(&[]).await.one("networkInterfaceId");
    let taken = c
        .call(
            "AssignPrivateIpAddresses",
            &[
                ("NetworkInterfaceId", &other),
                ("PrivateIpAddress.1", &ips[0]),
            ],
        )
        .await;
    assert_eq!(taken.error_code(), "InvalidIPAddress.InUse");
    let u = c
        .call(
            "UnassignPrivateIpAddresses",
            &[
                ("NetworkInterfaceId", &eni),
                ("PrivateIpAddress.1", &ips[0]),
                ("Ipv4Prefix.1", &prefix),
            ],
        )
        .await;
    assert_eq!((u.status, u.one("return").as_str()), (200, "true"));
    let d = c
        .call(
            "DescribeNetworkInterfaces",
            &[("NetworkInterfaceId.1", &eni)],
        )
        .await;
    assert_eq!(d.all("privateIpAddress").len(), 1 + 1 + 2); // top-level primary + set of 3
    assert!(d.all("ipv4Prefix").is_empty());
    let m = c
        .call(
            "ModifyNetworkInterfaceAttribute",
            &[
                ("NetworkInterfaceId", &eni),
                ("SecurityGroupId.1", "sg-0123456789abcdef0"),
            ],
        )
        .await;
    assert_eq!(m.error_code(), "InvalidGroup.NotFound");
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn trunk_members_are_associated_and_described() {
    let h = start(SimConfig::instant()).await;
    let c = Client::new(&h);
    let instance = c.register("node-t", "m5.large").await["instance_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let trunk = c.create_eni(&[("InterfaceType", "trunk")]).await;
    assert_eq!(trunk.one("interfaceType"), "trunk");
    let trunk = trunk.one("networkInterfaceId");
    let a = c
        .call(
            "AttachNetworkInterface",
            &[
                ("NetworkInterfaceId", &trunk),
                ("InstanceId", &instance),
                ("DeviceIndex", "1"),
            ],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let branch = c.create_eni(&[]).await.one("networkInterfaceId");
    let assoc = c
        .call(
            "AssociateTrunkInterface",
            &[
                ("BranchInterfaceId", &branch),
                ("TrunkInterfaceId", &trunk),
                ("VlanId", "100"),
                ("ClientToken", "assoc-1"),
            ],
        )
        .await;
    assert_eq!(assoc.status, 200, "{}", assoc.body);
    let id = assoc.one("associationId");
    assert!(is_ec2_id(&id, "trunk-assoc"), "{id}");
    assert_eq!(assoc.one("interfaceProtocol"), "VLAN");
    let again = c
        .call(
            "AssociateTrunkInterface",
            &[
                ("BranchInterfaceId", &branch),
                ("TrunkInterfaceId", &trunk),
                ("VlanId", "100"),
                ("ClientToken", "assoc-1"),
            ],
        )
        .await;
    assert_eq!(again.one("associationId"), id);
    let d = c
        .call(
            "DescribeTrunkInterfaceAssociations",
            &[
                (
                    "Filter.1.Name",
                    "trunk-interface-association.trunk-interface-id",
                ),
                ("Filter.1.Value.1", &trunk),
            ],
        )
        .await;
    assert_eq!(d.all("associationId"), vec![id.clone()]);
    assert_eq!(d.one("vlanId"), "100");
    let other = c.create_eni(&[]).await.one("networkInterfaceId");
    let dup = c
        .call(
            "AssociateTrunkInterface",
            &[
                ("BranchInterfaceId", &other),
                ("TrunkInterfaceId", &trunk),
                ("VlanId", "100"),
            ],
        )
        .await;
    assert_eq!(dup.error_code(), "InvalidParameterValue");
    let view = c.admin_get("/dataplane").await;
    let member = view["nodes"][0]["enis"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["eni_id"] == branch.as_str())
        .cloned()
        .unwrap();
    assert_eq!(member["kind"]["Member"]["vlan_id"], 100);
    let dis = c
        .call("DisassociateTrunkInterface", &[("AssociationId", &id)])
        .await;
    assert_eq!(dis.one("return"), "true");
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn throttling_answers_request_limit_exceeded() {
    let h = start(SimConfig::instant()).await;
    let c = Client::new(&h);
    let eni = c.create_eni(&[]).await.one("networkInterfaceId");
    c.admin_put(
        "/config",
        json!({"rate_limits": {"mutate": {"capacity": 2, "refill_per_sec": 0.0}}}),
    )
    .await;
    let tag = |v: &'static str| {
        [
            ("ResourceId.1", eni.clone()),
            ("Tag.1.Key", "k".into()),
            ("Tag.1.Value", v.to_owned()),
        ]
    };
    for v in ["a", "b"] {
        let t = tag(v);
        let p: Vec<(&str, &str)> = t.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(c.call("CreateTags", &p).await.status, 200);
    }
    let t = tag("c");
    let p: Vec<(&str, &str)> = t.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = c.call("CreateTags", &p).await;
    assert_eq!(
        (a.status, a.error_code().as_str()),
        (503, "RequestLimitExceeded")
    );
    // Describes have their own buckets.
    assert_eq!(c.call("DescribeSubnets", &[]).await.status, 200);
    let counters = c.admin_get("/counters").await;
    assert_eq!(counters["CreateTags"]["calls"], 3);
    assert_eq!(counters["CreateTags"]["throttled"], 1);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn client_tokens_make_creation_idempotent() {
    let h = start(SimConfig::instant()).await;
    let c = Client::new(&h);
    let first = c
        .create_eni(&[
            ("ClientToken", "tok-a"),
            ("SecondaryPrivateIpAddressCount", "1"),
        ])
        .await;
    let again = c
        .create_eni(&[
            ("ClientToken", "tok-a"),
            ("SecondaryPrivateIpAddressCount", "1"),
        ])
        .await;
    assert_eq!(
        first.one("networkInterfaceId"),
        again.one("networkInterfaceId")
    );
    assert_eq!(again.one("clientToken"), "tok-a");
    let other = c
        .create_eni(&[
            ("ClientToken", "tok-a"),
            ("SecondaryPrivateIpAddressCount", "2"),
        ])
        .await;
    assert_eq!(other.error_code(), "IdempotentParameterMismatch");
    let state = c.admin_get("/state").await;
    assert_eq!(state["state"]["enis"].as_object().unwrap().len(), 1);
    assert!(state["invariant_violations"].as_array().unwrap().is_empty());
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn injected_faults_and_timeouts_whose_effect_happened() {
    let h = start(SimConfig::instant()).await;
    let c = Client::new(&h);
    c.admin_put(
        "/config",
        json!({"faults": {"error_probability": 1.0, "actions": ["DescribeSubnets"]}}),
    )
    .await;
    let a = c.call("DescribeSubnets", &[]).await;
    let code = a.error_code();
    assert!(
        code == "InternalError" || code == "ServiceUnavailable",
        "{code}"
    );
    assert!(a.status >= 500);
    let subnet = {
        c.admin_put("/config", json!({"faults": {"error_probability": 0.0, "timeout_probability": 1.0, "timeout_hang_ms": 1500, "actions": ["CreateNetworkInterface"]}}))
            .await;
        let state = c.admin_get("/state").await;
        state["state"]["subnets"]
            .as_object()
            .unwrap()
            .keys()
            .next()
            .unwrap()
            .clone()
    };
    let timed_out = c
        .call_with(
            "CreateNetworkInterface",
            &[("SubnetId", &subnet), ("ClientToken", "retry-me")],
            Some(Duration::from_millis(200)),
        )
        .await;
    assert!(timed_out.is_err(), "the client should have timed out");
    // The ENI exists although the client never heard back; the retry gets it.
    let state = c.admin_get("/state").await;
    assert_eq!(state["state"]["enis"].as_object().unwrap().len(), 1);
    c.admin_put("/config", json!({"faults": {"timeout_probability": 0.0}}))
        .await;
    let retry = c
        .call(
            "CreateNetworkInterface",
            &[("SubnetId", &subnet), ("ClientToken", "retry-me")],
        )
        .await;
    let id = retry.one("networkInterfaceId");
    assert!(state["state"]["enis"].get(&id).is_some());
    let counters = c.admin_get("/counters").await;
    assert_eq!(counters["DescribeSubnets"]["faulted"], 1);
    assert_eq!(counters["CreateNetworkInterface"]["faulted"], 0);
    assert_eq!(counters["CreateNetworkInterface"]["timed_out"], 1);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn describes_lag_behind_when_configured() {
    let mut cfg = SimConfig::instant();
    cfg.describe_lag_ms = 400;
    let h = start(cfg).await;
    let c = Client::new(&h);
    let eni = c.create_eni(&[]).await.one("networkInterfaceId");
    let early = c
        .call(
            "DescribeNetworkInterfaces",
            &[
                ("Filter.1.Name", "network-interface-id"),
                ("Filter.1.Value.1", &eni),
            ],
        )
        .await;
    assert!(early.all("networkInterfaceId").is_empty(), "{}", early.body);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let late = c
        .call(
            "DescribeNetworkInterfaces",
            &[
                ("Filter.1.Name", "network-interface-id"),
                ("Filter.1.Value.1", &eni),
            ],
        )
        .await;
    assert_eq!(late.all("networkInterfaceId"), vec![eni]);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn reset_returns_to_the_layout() {
    let h = start(SimConfig::instant()).await;
    let c = Client::new(&h);
    let before = c.subnet("pods-a").await;
    c.register("node-r", "c5.large").await;
    c.create_eni(&[]).await;
    c.admin_post("/reset", Value::Null).await;
    let state = c.admin_get("/state").await;
    assert!(state["state"]["enis"].as_object().unwrap().is_empty());
    assert!(state["state"]["instances"].as_object().unwrap().is_empty());
    assert_eq!(c.subnet("pods-a").await, before);
    h.shutdown().await.unwrap();
}
