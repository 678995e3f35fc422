//! EC2 Query parameters: `Name`, `Name.N` lists and `Name.N.Field` structure lists.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;

use crate::cloud::model::Tags;
use crate::error::{CloudError, CloudResult, ErrorCode};

#[derive(Clone, Debug, Default)]
pub struct Params {
    map: BTreeMap<String, String>,
}

impl Params {
    /// Query string pairs then form body pairs (the body wins on repeats).
    pub fn parse(query: &[u8], body: &[u8]) -> Self {
        let map = form_urlencoded::parse(query)
            .chain(form_urlencoded::parse(body))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Self { map }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    pub fn required(&self, key: &str) -> CloudResult<&str> {
        self.get(key).filter(|v| !v.is_empty()).ok_or_else(|| {
            CloudError::new(
                ErrorCode::MissingParameter,
                format!("The request must contain the parameter {key}"),
            )
        })
    }

    pub fn parsed<T: FromStr>(&self, key: &str) -> CloudResult<Option<T>> {
        self.get(key)
            .map(|v| {
                v.parse::<T>().map_err(|_| {
                    CloudError::invalid_parameter(format!("Invalid value '{v}' for {key}"))
                })
            })
            .transpose()
    }

    pub fn flag(&self, key: &str) -> CloudResult<bool> {
        Ok(self.parsed::<bool>(key)?.unwrap_or(false))
    }

    /// Values of `prefix.1`, `prefix.2`, ... in index order.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        let mut items: Vec<(u32, String)> = self
            .map
            .iter()
            .filter_map(|(k, v)| {
                let n = k
                    .strip_prefix(prefix)?
                    .strip_prefix('.')?
                    .parse::<u32>()
                    .ok()?;
                Some((n, v.clone()))
            })
            .collect();
        items.sort_by_key(|(n, _)| *n);
        items.into_iter().map(|(_, v)| v).collect()
    }

    pub fn parsed_list<T: FromStr>(&self, prefix: &str) -> CloudResult<Vec<T>> {
        self.list(prefix)
            .into_iter()
            .map(|v| {
                v.parse::<T>().map_err(|_| {
                    CloudError::invalid_parameter(format!("Invalid value '{v}' for {prefix}"))
                })
            })
            .collect()
    }

    /// `prefix.N.Field...` grouped by N, as sub-parameters named `Field...`.
    pub fn structs(&self, prefix: &str) -> Vec<Params> {
        let mut groups: BTreeMap<u32, Params> = BTreeMap::new();
        for (k, v) in &self.map {
            let Some(rest) = k.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')) else {
                continue;
            };
            let Some((n, field)) = rest.split_once('.') else {
                continue;
            };
            let Ok(n) = n.parse::<u32>() else { continue };
            groups
                .entry(n)
                .or_default()
                .map
                .insert(field.to_owned(), v.clone());
        }
        groups.into_values().collect()
    }

    pub fn ipv4(&self, key: &str) -> CloudResult<Option<Ipv4Addr>> {
        self.parsed::<Ipv4Addr>(key)
    }

    pub fn prefixes(&self, values: Vec<String>) -> CloudResult<Vec<Ipv4Net>> {
        values
            .into_iter()
            .map(|v| {
                v.parse::<Ipv4Net>().map_err(|_| {
                    CloudError::invalid_parameter(format!("Invalid IPv4 prefix '{v}'"))
                })
            })
            .collect()
    }

    /// `Tag.N.Key` / `Tag.N.Value` under `prefix`.
    pub fn tags(&self, prefix: &str) -> Tags {
        self.structs(prefix)
            .into_iter()
            .filter_map(|t| {
                Some((
                    t.get("Key")?.to_owned(),
                    t.get("Value").unwrap_or("").to_owned(),
                ))
            })
            .collect()
    }

    pub fn filters(&self) -> Vec<Filter> {
        self.structs("Filter")
            .into_iter()
            .filter_map(|f| {
                Some(Filter {
                    name: f.get("Name")?.to_owned(),
                    values: f.list("Value"),
                })
            })
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

impl Filter {
    /// Whether any of `candidates` matches any filter value (`*` and `?` wildcards).
    pub fn matches_any<'a>(&self, candidates: impl IntoIterator<Item = &'a str>) -> bool {
        let candidates: Vec<&str> = candidates.into_iter().collect();
        self.values
            .iter()
            .any(|pattern| candidates.iter().any(|c| glob(pattern, c)))
    }
}

/// EC2 filter wildcards: `*` any run, `?` one character.
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The opaque `NextToken` of a page that ended at `key` (both front ends page by key).
pub fn encode_next_token(key: &str) -> String {
    hex::encode(key)
}

/// The key a `NextToken` names; a token this server did not issue is refused.
pub fn decode_next_token(token: &str) -> CloudResult<String> {
    hex::decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| CloudError::invalid_parameter(format!("Invalid NextToken '{token}'")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        assert_eq!(
            decode_next_token(&encode_next_token("eni-0abc")).unwrap(),
            "eni-0abc"
        );
        assert!(decode_next_token("zz").is_err());
    }

    #[test]
    fn lists_structs_filters_and_tags() {
        let p = Params::parse(
            b"Action=X",
            b"SecurityGroupId.2=sg-b&SecurityGroupId.1=sg-a&Filter.1.Name=tag%3Aowner&Filter.1.Value.1=me&Filter.1.Value.2=you&TagSpecification.1.ResourceType=network-interface&TagSpecification.1.Tag.1.Key=k&TagSpecification.1.Tag.1.Value=v",
        );
        assert_eq!(p.list("SecurityGroupId"), vec!["sg-a", "sg-b"]);
        let f = p.filters();
        assert_eq!(f[0].name, "tag:owner");
        assert_eq!(f[0].values, vec!["me", "you"]);
        let specs = p.structs("TagSpecification");
        assert_eq!(specs[0].get("ResourceType"), Some("network-interface"));
        assert_eq!(specs[0].tags("Tag").get("k").map(String::as_str), Some("v"));
    }

    #[test]
    fn wildcards() {
        assert!(glob("eni-*", "eni-0abc"));
        assert!(glob("10.0.?.5", "10.0.1.5"));
        assert!(!glob("10.0.?.5", "10.0.11.5"));
        assert!(glob("*", ""));
        assert!(!glob("a*c", "abd"));
    }
}
