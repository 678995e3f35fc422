//! Alibaba Cloud ECS (API 2014-05-26, vSwitches from VPC 2016-04-28), issue #13. So far:
//! how its error codes map onto [`CloudError`](crate::cloud::CloudError) (`errors`); the
//! request signature is the `eni-acs3` crate. The client, the calls and the provider
//! behind `CloudProvider` are to come (docs/cloud.md has the call-by-call design).

pub mod errors;
