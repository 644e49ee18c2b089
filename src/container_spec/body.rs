//! The exact `POST /containers/create` body: the spec as Engine JSON, with
//! `Env` and `Cmd` written straight from the spec's borrowed entries when
//! serialised (an `env_vars` value is never copied).
//!
//! Pure, like its parent [`crate::container_spec`].

use std::fmt;
use std::ops::{Deref, DerefMut};

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Map, Value, json};

use super::{Arg, ContainerSpec};

/// The exact `POST /containers/create` body.
///
/// `image` is the reference as pulled (after any registry mirror rewrite,
/// since create never pulls and looks the name up locally).
/// `sidecar_volumes` holds the volume name of each of `spec.sidecars`, in
/// the same order (the caller prepares one volume per sidecar; a name
/// without a sidecar, or a sidecar without a name, is left out).
pub fn create_body<'s>(
    spec: &'s ContainerSpec<'_>,
    image: &str,
    sidecar_volumes: &[String],
) -> CreateBody<'s> {
    debug_assert_eq!(spec.sidecars.len(), sidecar_volumes.len());
    let binds: Vec<String> = spec
        .sidecars
        .iter()
        .zip(sidecar_volumes)
        .map(|(s, vol)| {
            let mode = if s.read_only { "ro" } else { "rw" };
            format!("{vol}:{}:{mode}", s.mount_path)
        })
        .chain(spec.binds.iter().cloned())
        .collect();
    let mut host = Map::new();
    if !binds.is_empty() {
        host.insert("Binds".into(), json!(binds));
    }
    if let Some(n) = spec.limits.nano_cpus {
        host.insert("NanoCpus".into(), json!(n));
    }
    if let Some(m) = spec.limits.memory_bytes {
        host.insert("Memory".into(), json!(m));
        host.insert("MemorySwap".into(), json!(m));
    }
    let h = &spec.hardening;
    if let Some(rt) = h.runtime.as_deref().filter(|s| !s.is_empty()) {
        host.insert("Runtime".into(), json!(rt));
    }
    if let Some(net) = h.network.as_deref().filter(|s| !s.is_empty()) {
        host.insert("NetworkMode".into(), json!(net));
    }
    if !h.security_opt.is_empty() {
        host.insert("SecurityOpt".into(), json!(h.security_opt));
    }
    if !h.cap_drop.is_empty() {
        host.insert("CapDrop".into(), json!(h.cap_drop));
    }
    if let Some(p) = h.pids_limit {
        host.insert("PidsLimit".into(), json!(p));
    }
    if let Some(init) = h.init {
        host.insert("Init".into(), json!(init));
    }
    CreateBody {
        body: json!({
            "Image": image,
            "WorkingDir": spec.working_dir,
            "Labels": spec.labels,
            "HostConfig": Value::Object(host),
        }),
        env: &spec.env,
        cmd: &spec.cmd,
    }
}

/// The create body: a JSON object (reach it through `Deref`, e.g.
/// `body["Labels"][KEY] = …`) plus `Env` and `Cmd`, which serialising
/// writes straight from the spec's borrowed entries. `Env` or `Cmd` keys set
/// on the object are ignored: they are the spec's, validated, and only the spec's.
pub struct CreateBody<'s> {
    body: Value,
    env: &'s [(&'s str, &'s str)],
    cmd: &'s [Arg<'s>],
}

impl CreateBody<'_> {
    /// The whole body as one JSON value (tests; this copies the environment).
    pub fn to_value(&self) -> Value {
        let mut v = self.body.clone();
        let env: Vec<String> = self
            .env
            .iter()
            .map(|(k, val)| format!("{k}={val}"))
            .collect();
        v["Env"] = json!(env);
        v["Cmd"] = json!(self.cmd);
        v
    }
}

impl Deref for CreateBody<'_> {
    type Target = Value;
    fn deref(&self) -> &Value {
        &self.body
    }
}

impl DerefMut for CreateBody<'_> {
    fn deref_mut(&mut self) -> &mut Value {
        &mut self.body
    }
}

impl Serialize for CreateBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Env<'e>(&'e [(&'e str, &'e str)]);
        impl Serialize for Env<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                struct Entry<'x>(&'x str, &'x str);
                impl fmt::Display for Entry<'_> {
                    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "{}={}", self.0, self.1)
                    }
                }
                let mut seq = s.serialize_seq(Some(self.0.len()))?;
                for (k, v) in self.0 {
                    seq.serialize_element(&Streamed(Entry(k, v)))?;
                }
                seq.end()
            }
        }
        // `collect_str` lets serde_json escape the text as it is written,
        // never holding `KEY=VALUE` as a string of its own.
        struct Streamed<T>(T);
        impl<T: fmt::Display> Serialize for Streamed<T> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(&self.0)
            }
        }
        let fields = self.body.as_object();
        let mut map = s.serialize_map(None)?;
        for (k, v) in fields.into_iter().flatten() {
            if k != "Env" && k != "Cmd" {
                map.serialize_entry(k, v)?;
            }
        }
        map.serialize_entry("Cmd", self.cmd)?;
        map.serialize_entry("Env", &Env(self.env))?;
        map.end()
    }
}
