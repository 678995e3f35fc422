//! Instance types and their published network limits (data/instance_types.yaml).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

const BUILTIN: &str = include_str!("../data/instance_types.yaml");

/// Most addresses any AWS interface may hold (the largest types allow 50). Unattached
/// interfaces are checked against this; the instance type's own limit applies on attach.
pub const MAX_IPV4_PER_ENI_ANY_TYPE: u32 = 50;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    Aws,
    Alibaba,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceType {
    pub name: String,
    pub cloud: Cloud,
    pub vcpus: u32,
    pub memory_mib: u64,
    /// Network interfaces including the primary.
    pub max_enis: u32,
    /// Primary plus secondary IPv4 addresses per interface; a /28 prefix takes one slot.
    pub ipv4_per_eni: u32,
    /// Whether a trunk interface may be attached.
    pub trunk: bool,
    /// Branch (member) interfaces per trunk.
    pub max_members: u32,
    pub network_performance: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("instance type data is not valid YAML: {0}")]
    Parse(#[from] serde_yaml::Error),
    #[error("instance type {name}: {problem}")]
    Invalid { name: String, problem: &'static str },
}

#[derive(Deserialize)]
struct CatalogFile {
    instance_types: Vec<InstanceType>,
}

/// The set of instance types the simulated cloud offers.
#[derive(Clone, Debug)]
pub struct Catalog {
    types: BTreeMap<String, InstanceType>,
}

impl Catalog {
    /// The catalog embedded in the binary.
    pub fn builtin() -> Result<Self, CatalogError> {
        Self::from_yaml(BUILTIN)
    }

    pub fn from_yaml(text: &str) -> Result<Self, CatalogError> {
        let file: CatalogFile = serde_yaml::from_str(text)?;
        let mut types = BTreeMap::new();
        for t in file.instance_types {
            let problem = if t.max_enis == 0 {
                Some("max_enis must be at least 1")
            } else if t.ipv4_per_eni == 0 || t.ipv4_per_eni > MAX_IPV4_PER_ENI_ANY_TYPE {
                Some("ipv4_per_eni must be 1..=50")
            } else if !t.trunk && t.max_members != 0 {
                Some("max_members set on a type without trunk support")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(CatalogError::Invalid {
                    name: t.name,
                    problem,
                });
            }
            types.insert(t.name.clone(), t);
        }
        Ok(Self { types })
    }

    pub fn get(&self, name: &str) -> Option<&InstanceType> {
        self.types.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &InstanceType> {
        self.types.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_has_the_published_types() {
        let c = Catalog::builtin().unwrap();
        let aws = c.iter().filter(|t| t.cloud == Cloud::Aws).count();
        let ali = c.iter().filter(|t| t.cloud == Cloud::Alibaba).count();
        assert!(aws >= 8, "{aws} AWS types");
        assert!(ali >= 4, "{ali} Alibaba types");
        let m5 = c.get("m5.large").unwrap();
        assert_eq!((m5.max_enis, m5.ipv4_per_eni, m5.max_members), (3, 10, 9));
        assert!(!c.get("t3.medium").unwrap().trunk);
    }

    #[test]
    fn rejects_inconsistent_entries() {
        let yaml = "instance_types:\n- {name: x, cloud: aws, vcpus: 1, memory_mib: 1, max_enis: 0, ipv4_per_eni: 2, trunk: false, max_members: 0, network_performance: low}\n";
        assert!(matches!(
            Catalog::from_yaml(yaml),
            Err(CatalogError::Invalid { .. })
        ));
    }
}
