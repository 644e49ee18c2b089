//! Engine calls about the daemon itself rather than one task's objects:
//! `GET /info` (runtimes, security options, registry settings) and network
//! lookups, which the start-up and doctor checks compare the configuration
//! against.
//!
//! Read-only calls only; what to make of the answers is `preflight`'s job.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::api::{Docker, enc, null_as_default};
use super::client::Body;
use super::error::Result;

/// `GET /info`, the fields the checks use.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SystemInfo {
    /// Configured OCI runtimes by name (`runc`, `runsc`, ...); only the names are kept.
    #[serde(rename = "Runtimes", default, deserialize_with = "null_as_default")]
    runtimes: BTreeMap<String, IgnoredAny>,
    /// The default runtime's name.
    #[serde(rename = "DefaultRuntime", default)]
    pub default_runtime: String,
    /// The daemon's default log driver (`json-file`, `local`, `journald`, …).
    #[serde(rename = "LoggingDriver", default)]
    pub logging_driver: String,
    /// e.g. `name=seccomp,profile=default`, `name=apparmor`, `name=rootless`.
    #[serde(
        rename = "SecurityOptions",
        default,
        deserialize_with = "null_as_default"
    )]
    pub security_options: Vec<String>,
    /// Which registries the daemon reaches over plain HTTP.
    #[serde(
        rename = "RegistryConfig",
        default,
        deserialize_with = "null_as_default"
    )]
    pub registry_config: RegistryConfig,
    /// The daemon's data root (`/var/lib/docker`), as the daemon's host sees it.
    #[serde(rename = "DockerRootDir", default)]
    pub docker_root_dir: String,
}

impl SystemInfo {
    /// The runtime names the daemon accepts in `HostConfig.Runtime`, sorted.
    pub fn runtimes(&self) -> Vec<&str> {
        self.runtimes.keys().map(String::as_str).collect()
    }

    /// Whether `SecurityOptions` lists `name=<name>` (e.g. `apparmor`).
    pub fn has_security_option(&self, name: &str) -> bool {
        self.security_options.iter().any(|o| {
            o.split(',')
                .any(|part| part.strip_prefix("name=") == Some(name))
        })
    }
}

/// `RegistryConfig` of `GET /info`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RegistryConfig {
    /// CIDRs whose registries are plain HTTP (default `127.0.0.0/8`).
    #[serde(
        rename = "InsecureRegistryCIDRs",
        default,
        deserialize_with = "null_as_default"
    )]
    pub insecure_cidrs: Vec<String>,
    /// Per-registry settings, by `host[:port]`.
    #[serde(rename = "IndexConfigs", default, deserialize_with = "null_as_default")]
    pub index_configs: BTreeMap<String, IndexConfig>,
}

/// One entry of `RegistryConfig.IndexConfigs`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct IndexConfig {
    /// False for a registry listed in the daemon's `insecure-registries`.
    #[serde(rename = "Secure", default)]
    pub secure: bool,
}

/// `GET /networks/{id}`, the fields the checks use.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct NetworkInfo {
    /// The network's name.
    #[serde(rename = "Name", default)]
    pub name: String,
    /// `bridge`, `host`, `null`, `overlay`, ...
    #[serde(rename = "Driver", default)]
    pub driver: String,
    /// Driver options, e.g. `com.docker.network.bridge.enable_icc`.
    #[serde(rename = "Options", default, deserialize_with = "null_as_default")]
    pub options: BTreeMap<String, String>,
    /// The network's labels.
    #[serde(rename = "Labels", default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
}

impl Docker {
    /// `GET /info`.
    pub fn info(&self) -> Result<SystemInfo> {
        self.send_json("GET", "/info".into(), Body::None)
    }

    /// The ids of the images the daemon has (`GET /images/json`).
    pub fn image_ids(&self) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Summary {
            #[serde(rename = "Id")]
            id: String,
        }
        let list: Vec<Summary> = self.send_json("GET", "/images/json".into(), Body::None)?;
        Ok(list.into_iter().map(|s| s.id).collect())
    }

    /// `GET /networks/{name}`; `None` when the daemon has no such network.
    pub fn network_inspect(&self, name: &str) -> Result<Option<NetworkInfo>> {
        self.get_optional(format!("/networks/{}", enc(name)))
    }

    /// `POST /networks/create` of a `bridge` network with these driver
    /// options and labels. `CheckDuplicate` is sent (API < 1.44 defaults
    /// it to false and would make a second network of the same name): a
    /// name already taken is a 409.
    pub fn network_create(
        &self,
        name: &str,
        options: &BTreeMap<&str, &str>,
        labels: &BTreeMap<String, String>,
    ) -> Result<()> {
        let body = serde_json::json!({
            "Name": name,
            "Driver": "bridge",
            "CheckDuplicate": true,
            "Options": options,
            "Labels": labels,
        });
        self.send_json::<IgnoredAny>(
            "POST",
            "/networks/create".into(),
            Body::Json(body.to_string().into_bytes()),
        )
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_from_an_engine_20_10_reply() {
        let info: SystemInfo = serde_json::from_str(
            r#"{"Runtimes":{"io.containerd.runc.v2":{"path":"runc"},"runc":{"path":"runc"},"runsc":{"path":"/usr/bin/runsc"}},
                "DefaultRuntime":"runc","LoggingDriver":"json-file","SecurityOptions":["name=apparmor","name=seccomp,profile=default"],
                "RegistryConfig":{"InsecureRegistryCIDRs":["127.0.0.0/8"],"IndexConfigs":{"docker.io":{"Name":"docker.io","Secure":true},"mirror.lan:5000":{"Name":"mirror.lan:5000","Secure":false}}},
                "Name":"host"}"#,
        )
        .unwrap();
        assert_eq!(info.runtimes(), ["io.containerd.runc.v2", "runc", "runsc"]);
        assert_eq!(info.logging_driver, "json-file");
        assert!(info.has_security_option("apparmor"));
        assert!(info.has_security_option("seccomp"));
        assert!(!info.has_security_option("selinux"));
        assert_eq!(info.registry_config.insecure_cidrs, ["127.0.0.0/8"]);
        assert!(!info.registry_config.index_configs["mirror.lan:5000"].secure);
        let empty: SystemInfo =
            serde_json::from_str(r#"{"Runtimes":null,"SecurityOptions":null}"#).unwrap();
        assert!(empty.runtimes().is_empty());
    }
}
