//! moto's EC2 server as a child process, with a VPC, subnet, security group and instance
//! made through the SDK (moto starts empty).

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};

use eni_test_support::cloud::sdk_config;

use super::{Capabilities, Fixture};

/// moto accepts any credentials.
const ACCESS_KEY: &str = "AKIDMOTO";
const SECRET_KEY: &str = "moto-secret";

/// Kills the server when the test ends, also on panic.
pub struct MotoServer {
    child: Child,
    pub url: String,
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// Creates the venv if needed (operator/tests/support/moto.sh) and returns moto_server.
fn moto_server_binary() -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/moto.sh");
    let out = Command::new("bash")
        .arg(script)
        .stderr(Stdio::inherit())
        .output()
        .expect("run moto.sh");
    assert!(out.status.success(), "moto.sh failed: {}", out.status);
    PathBuf::from(String::from_utf8(out.stdout).expect("utf-8 path").trim())
}

impl MotoServer {
    pub fn start() -> Self {
        let binary = moto_server_binary();
        let port = free_port();
        let child = Command::new(binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let server = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// Builds the VPC, subnet, security group and one instance the suite works on.
    pub async fn fixture(&self) -> Fixture {
        let ec2 = aws_sdk_ec2::Client::new(&sdk_config(&self.url, ACCESS_KEY, SECRET_KEY).await);
        let vpc = ec2
            .create_vpc()
            .cidr_block("10.0.0.0/16")
            .send()
            .await
            .expect("create VPC");
        let vpc_id = vpc
            .vpc()
            .and_then(|v| v.vpc_id())
            .expect("VPC id")
            .to_owned();
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block("10.0.1.0/24")
            .availability_zone("us-east-1a")
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Subnet)
                    .tags(
                        Tag::builder()
                            .key("eni-operator.io/pods")
                            .value("true")
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("create subnet");
        let subnet_id = subnet
            .subnet()
            .and_then(|s| s.subnet_id())
            .expect("subnet id")
            .to_owned();
        let mut groups = Vec::new();
        for name in ["pods", "pods-restricted"] {
            let sg = ec2
                .create_security_group()
                .group_name(name)
                .description(name)
                .vpc_id(&vpc_id)
                .send()
                .await
                .expect("create security group");
            groups.push(sg.group_id().expect("group id").to_owned());
        }
        let images = ec2.describe_images().send().await.expect("describe images");
        let image = images
            .images()
            .first()
            .and_then(|i| i.image_id())
            .expect("an AMI")
            .to_owned();
        let run = ec2
            .run_instances()
            .image_id(image)
            .instance_type(InstanceType::M5Large)
            .subnet_id(&subnet_id)
            .min_count(1)
            .max_count(1)
            .send()
            .await
            .expect("run instance");
        let instance_id = run
            .instances()
            .first()
            .and_then(|i| i.instance_id())
            .expect("instance id")
            .to_owned();
        Fixture {
            backend: "moto",
            endpoint: self.url.clone(),
            access_key: ACCESS_KEY.to_owned(),
            secret_key: SECRET_KEY.to_owned(),
            instance_id,
            subnet_id,
            subnet_tags: [("eni-operator.io/pods".to_owned(), "true".to_owned())].into(),
            security_groups: groups,
            caps: Capabilities::MOTO,
        }
    }
}
