//! Pushing images to a registry with the OCI distribution API (oci-client). The exact
//! manifest bytes built locally are pushed, so the registry serves the same digest; it
//! is read back and compared after each push.

use http::HeaderValue;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::error::{Error, Result};
use crate::image::Image;

/// Registry user name (anonymous access when unset).
pub const USERNAME_ENV: &str = "ENI_REGISTRY_USERNAME";
/// Registry password or token.
pub const PASSWORD_ENV: &str = "ENI_REGISTRY_PASSWORD";
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// Basic credentials from the environment, anonymous if either is unset.
pub fn auth_from_env() -> RegistryAuth {
    match (std::env::var(USERNAME_ENV), std::env::var(PASSWORD_ENV)) {
        (Ok(user), Ok(password)) => RegistryAuth::Basic(user, password),
        _ => RegistryAuth::Anonymous,
    }
}

/// `<prefix>/<name>:<tag>`. The prefix must start with a registry host
/// (`registry.example.com/team`, `localhost:5000`): a bare `team` would silently mean
/// Docker Hub.
pub fn target_reference(prefix: &str, image: &Image) -> Result<String> {
    let prefix = prefix.trim_end_matches('/');
    let reference = format!("{prefix}/{}:{}", image.name, image.tag);
    let parsed: Reference = reference
        .parse()
        .map_err(|_| Error::BadReference(prefix.to_owned()))?;
    if prefix.split('/').next() != Some(parsed.registry()) {
        return Err(Error::BadReference(format!(
            "{prefix} (it must start with a registry host such as registry.example.com or localhost:5000)"
        )));
    }
    Ok(reference)
}

/// A registry client with its credentials.
pub struct Pusher {
    client: Client,
    auth: RegistryAuth,
}

impl Pusher {
    /// `insecure`: plain HTTP (a local registry such as localhost:5000).
    pub fn new(insecure: bool, auth: RegistryAuth) -> Result<Self> {
        // kube and the AWS SDK are not linked here, but rustls still wants to be told.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = ClientConfig {
            protocol: if insecure {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            ..ClientConfig::default()
        };
        let client = Client::try_from(config).map_err(|e| Error::Push {
            reference: "(client setup)".to_owned(),
            source: Box::new(e),
        })?;
        Ok(Self { client, auth })
    }

    /// Pushes the blobs the registry lacks, then the manifest under `reference`'s tag;
    /// returns the digest the registry reports for the tag, checked to be the local one.
    pub async fn push(&self, image: &Image, reference: &str) -> Result<String> {
        let failed = |e| Error::Push {
            reference: reference.to_owned(),
            source: Box::new(e),
        };
        let target: Reference = reference
            .parse()
            .map_err(|_| Error::BadReference(reference.to_owned()))?;
        self.client
            .store_auth_if_needed(target.resolve_registry(), &self.auth)
            .await;
        let blobs = image
            .layers
            .iter()
            .map(|l| (&l.digest, &l.blob))
            .chain([(&image.config_digest, &image.config)]);
        for (digest, blob) in blobs {
            if self
                .client
                .blob_exists(&target, digest)
                .await
                .map_err(failed)?
            {
                tracing::debug!(%reference, %digest, "blob already in the registry");
                continue;
            }
            self.client
                .push_blob(&target, blob.clone(), digest)
                .await
                .map_err(failed)?;
        }
        self.client
            .push_manifest_raw(
                &target,
                image.manifest.clone(),
                HeaderValue::from_static(MANIFEST_MEDIA_TYPE),
            )
            .await
            .map_err(failed)?;
        let remote = self
            .client
            .fetch_manifest_digest(&target, &self.auth)
            .await
            .map_err(failed)?;
        if remote != image.manifest_digest {
            return Err(Error::DigestMismatch {
                reference: reference.to_owned(),
                local: image.manifest_digest.clone(),
                remote,
            });
        }
        Ok(remote)
    }
}
