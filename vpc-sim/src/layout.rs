//! The VPC layout (CIDR, subnets, security groups) the cloud starts from.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::catalog::Cloud;
use crate::dataplane_view::Protocol;

const DEFAULT_LAYOUT: &str = include_str!("../data/default_layout.yaml");
const ALIBABA_LAYOUT: &str = include_str!("../data/alibaba_layout.yaml");

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    pub vpc: VpcSpec,
    pub subnets: Vec<SubnetSpec>,
    #[serde(default)]
    pub security_groups: Vec<GroupSpec>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VpcSpec {
    /// Whose VPC this is: it decides the shape of ids and which instance types exist.
    #[serde(default = "aws")]
    pub cloud: Cloud,
    pub cidr: Ipv4Net,
    pub region: String,
    /// Fixed id; generated when absent.
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetSpec {
    /// Becomes the `Name` tag.
    pub name: String,
    pub cidr: Ipv4Net,
    pub az: String,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub ingress: Vec<RuleSpec>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub protocol: ProtocolSpec,
    #[serde(default)]
    pub from_port: u16,
    #[serde(default = "max_port")]
    pub to_port: u16,
    #[serde(default)]
    pub cidrs: Vec<Ipv4Net>,
    /// Names of other groups of this layout.
    #[serde(default)]
    pub source_groups: Vec<String>,
}

fn aws() -> Cloud {
    Cloud::Aws
}

fn max_port() -> u16 {
    u16::MAX
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolSpec {
    Tcp,
    Udp,
    Icmp,
    All,
}

impl From<ProtocolSpec> for Protocol {
    fn from(p: ProtocolSpec) -> Self {
        match p {
            ProtocolSpec::Tcp => Protocol::Tcp,
            ProtocolSpec::Udp => Protocol::Udp,
            ProtocolSpec::Icmp => Protocol::Icmp,
            ProtocolSpec::All => Protocol::All,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("cannot read layout file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("layout is not valid YAML: {0}")]
    Parse(#[from] serde_yaml::Error),
    #[error("invalid layout: {0}")]
    Invalid(String),
}

impl Layout {
    pub fn builtin() -> Result<Self, LayoutError> {
        Self::from_yaml(DEFAULT_LAYOUT)
    }

    /// The built-in layout of `cloud`: the same subnets and groups, in an AWS region or
    /// in an Alibaba Cloud region with its zones.
    pub fn builtin_for(cloud: Cloud) -> Result<Self, LayoutError> {
        match cloud {
            Cloud::Aws => Self::builtin(),
            Cloud::Alibaba => Self::from_yaml(ALIBABA_LAYOUT),
        }
    }

    pub fn from_file(path: &Path) -> Result<Self, LayoutError> {
        let text = std::fs::read_to_string(path).map_err(|source| LayoutError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text)
    }

    pub fn from_yaml(text: &str) -> Result<Self, LayoutError> {
        let layout: Layout = serde_yaml::from_str(text)?;
        layout.validate()?;
        Ok(layout)
    }

    /// Refuses what the cloud would refuse when building the VPC: AWS subnets are /16 to
    /// /28, inside the VPC, not overlapping, in an AZ of the region.
    fn validate(&self) -> Result<(), LayoutError> {
        let bad = |m: String| Err(LayoutError::Invalid(m));
        let vpc = self.vpc.cidr.trunc();
        if !(16..=28).contains(&vpc.prefix_len()) {
            return bad(format!("VPC CIDR {vpc} must be /16 to /28"));
        }
        let mut names = BTreeSet::new();
        for (i, s) in self.subnets.iter().enumerate() {
            if !names.insert(s.name.as_str()) {
                return bad(format!("subnet name {} used twice", s.name));
            }
            if s.cidr != s.cidr.trunc() {
                return bad(format!(
                    "subnet {} CIDR {} has host bits set",
                    s.name, s.cidr
                ));
            }
            if !(16..=28).contains(&s.cidr.prefix_len()) || !vpc.contains(&s.cidr) {
                return bad(format!(
                    "subnet {} CIDR {} must be /16../28 inside {vpc}",
                    s.name, s.cidr
                ));
            }
            if !s.az.starts_with(&self.vpc.region) || s.az.len() == self.vpc.region.len() {
                return bad(format!(
                    "subnet {} AZ {} is not in region {}",
                    s.name, s.az, self.vpc.region
                ));
            }
            for other in &self.subnets[..i] {
                if other.cidr.contains(&s.cidr) || s.cidr.contains(&other.cidr) {
                    return bad(format!("subnets {} and {} overlap", other.name, s.name));
                }
            }
        }
        let groups: BTreeSet<&str> = self
            .security_groups
            .iter()
            .map(|g| g.name.as_str())
            .collect();
        if groups.len() != self.security_groups.len() {
            return bad("security group names must be unique".into());
        }
        if !groups.contains("default") {
            return bad("a security group named `default` is required".into());
        }
        for g in &self.security_groups {
            for r in &g.ingress {
                if r.from_port > r.to_port {
                    return bad(format!("group {}: from_port > to_port", g.name));
                }
                if let Some(missing) = r
                    .source_groups
                    .iter()
                    .find(|s| !groups.contains(s.as_str()))
                {
                    return bad(format!(
                        "group {} refers to unknown group {missing}",
                        g.name
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_layout_is_valid_and_has_a_tiny_subnet() {
        let l = Layout::builtin().unwrap();
        assert_eq!(l.vpc.cidr.to_string(), "10.0.0.0/16");
        assert!(l.subnets.iter().any(|s| s.cidr.prefix_len() == 28));
        let ali = Layout::builtin_for(Cloud::Alibaba).unwrap();
        assert_eq!(ali.vpc.cloud, Cloud::Alibaba);
        let names = |l: &Layout| l.subnets.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&ali), names(&l));
    }

    #[test]
    fn overlapping_subnets_are_refused() {
        let yaml = r#"
vpc: {cidr: 10.0.0.0/16, region: us-east-1}
subnets:
  - {name: a, cidr: 10.0.0.0/24, az: us-east-1a}
  - {name: b, cidr: 10.0.0.128/25, az: us-east-1a}
security_groups: [{name: default}]
"#;
        assert!(matches!(
            Layout::from_yaml(yaml),
            Err(LayoutError::Invalid(_))
        ));
    }

    #[test]
    fn subnet_outside_the_vpc_is_refused() {
        let yaml = r#"
vpc: {cidr: 10.0.0.0/16, region: us-east-1}
subnets: [{name: a, cidr: 10.1.0.0/24, az: us-east-1a}]
security_groups: [{name: default}]
"#;
        assert!(matches!(
            Layout::from_yaml(yaml),
            Err(LayoutError::Invalid(_))
        ));
    }
}
