//! Volume calls of the typed Engine API: create (plain, or `local` with
//! mount options), inspect, remove, list by label.
//!
//! Engine calls only: volume names and labels come from the caller.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::api::{
    Docker, MAX_ERROR_BODY, SHORT, enc, expect_success, label_filter, null_as_default,
};
use super::client::Body;
use super::error::Result;

/// `GET /volumes/{name}`, the fields the worker uses.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct VolumeInfo {
    /// Volume name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Labels set at creation.
    #[serde(rename = "Labels", default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    /// RFC 3339 creation time on the daemon's clock (`2026-12-02T13:12:23Z`);
    /// with the name, the volume's identity (a volume removed and made again
    /// under the same name differs).
    #[serde(rename = "CreatedAt", default)]
    pub created_at: String,
    /// Where the daemon keeps its files, as a path on the daemon's host.
    #[serde(rename = "Mountpoint", default)]
    pub mountpoint: String,
}

impl Docker {
    /// `POST /volumes/create` with these labels.
    pub fn volume_create(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<VolumeInfo> {
        let body = serde_json::json!({ "Name": name, "Labels": labels });
        self.send_json(
            "POST",
            "/volumes/create".into(),
            Body::Json(body.to_string().into_bytes()),
        )
    }

    /// `POST /volumes/create` with the `local` driver and these mount
    /// options (`type`, `device`, `o`), and these labels.
    pub fn volume_create_local(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        options: &BTreeMap<&str, String>,
    ) -> Result<VolumeInfo> {
        let body = serde_json::json!({
            "Name": name,
            "Driver": "local",
            "DriverOpts": options,
            "Labels": labels,
        });
        self.send_json(
            "POST",
            "/volumes/create".into(),
            Body::Json(body.to_string().into_bytes()),
        )
    }

    /// `GET /volumes/{name}`; `None` when there is no such volume.
    pub fn volume_inspect(&self, name: &str) -> Result<Option<VolumeInfo>> {
        self.get_optional(format!("/volumes/{}", enc(name)))
    }

    /// `DELETE /volumes/{name}`; a volume already gone is fine.
    pub fn volume_remove(&self, name: &str) -> Result<()> {
        self.volume_remove_existing(name).map(drop)
    }

    /// Removes a volume; `Ok(false)` when there was none of that name.
    pub fn volume_remove_existing(&self, name: &str) -> Result<bool> {
        let resp = self.send(
            "DELETE",
            format!("/volumes/{}", enc(name)),
            Body::None,
            Some(SHORT),
            None,
        )?;
        if resp.status() == 404 {
            return Ok(false);
        }
        expect_success(resp)?
            .read_limited(MAX_ERROR_BODY)
            .map(|_| true)
    }

    /// Volumes carrying all of `labels` (`key` or `key=value`).
    pub fn volume_list_by_label(&self, labels: &[&str]) -> Result<Vec<VolumeInfo>> {
        self.volumes_by_label(labels)
    }

    /// `GET /volumes` filtered by `labels`, each volume read as `T` (the
    /// list's `Volumes` is `null` when there are none).
    pub(super) fn volumes_by_label<T: DeserializeOwned>(&self, labels: &[&str]) -> Result<Vec<T>> {
        #[derive(Deserialize)]
        #[serde(bound = "T: DeserializeOwned")]
        struct List<T> {
            #[serde(rename = "Volumes", default, deserialize_with = "null_as_default")]
            volumes: Vec<T>,
        }
        let list: List<T> = self.send_json(
            "GET",
            format!("/volumes?filters={}", label_filter(labels)),
            Body::None,
        )?;
        Ok(list.volumes)
    }
}
